//! Container tests: the image's runtime stage, built with podman from the Dockerfile's own
//! text around a static musl host, run the way Cloud Run and GKE run it (read-only, as the
//! image's non-root user, `$PORT` set by the platform) under runc and under gVisor.
//!
//! They need podman, runsc and the musl target (`scripts/setup.sh` installs them) and fail,
//! never skip, without them.

mod container;
mod dockerfile;
mod image;
mod serve;
