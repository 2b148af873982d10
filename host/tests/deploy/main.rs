//! Deploy manifest tests: the Cloud Run service, its Cloud Build pipeline and the GKE
//! manifests in `deploy/` must agree with the host's defaults and with the image, so a
//! changed default cannot leave a probe, a port or a deadline behind; the private
//! variant must stay private and grant exactly the callers it names.

mod cloud_run;
mod gke;
#[path = "../common/help.rs"]
mod help;
mod manifest;
mod private;
