//! `deploy/service.yaml` (Cloud Run), its private variant `deploy/private/service.yaml`,
//! and `deploy/cloudbuild.yaml`.

use std::time::Duration;

use serde_yaml::Value;

use crate::help::ServeHelp;
use crate::manifest::{
    duration_setting, env, http_probes, image_lines, int, int_setting, load, only_container, read,
    setting, str,
};

const SERVICE: &str = "deploy/service.yaml";

/// The private variant: the same service, IAM-only, with internal ingress.
pub const PRIVATE_SERVICE: &str = "deploy/private/service.yaml";

/// The variable that names the Google Cloud project traces belong to.
const PROJECT_VARIABLE: &str = "GOOGLE_CLOUD_PROJECT";

/// Time Cloud Run gives an instance between SIGTERM and SIGKILL.
const CLOUD_RUN_GRACE: Duration = Duration::from_secs(10);

/// The revision template of the service in `path`.
pub fn revision(path: &str) -> Value {
    let service = load(path);
    assert_eq!(
        str(&service["apiVersion"], "apiVersion"),
        "serving.knative.dev/v1"
    );
    assert_eq!(str(&service["kind"], "kind"), "Service");
    service["spec"]["template"].clone()
}

#[test]
fn cloud_run_sends_traffic_and_probes_where_the_host_listens() {
    for path in [SERVICE, PRIVATE_SERVICE] {
        sends_traffic_and_probes_where_the_host_listens(&revision(path));
    }
}

fn sends_traffic_and_probes_where_the_host_listens(revision: &Value) {
    let container = only_container(&revision["spec"]);
    // Cloud Run sets $PORT to the container port and refuses a PORT of our own.
    assert_eq!(env(container, "PORT"), None, "Cloud Run reserves PORT");
    let ports = container["ports"].as_sequence().expect("container ports");
    assert_eq!(ports.len(), 1, "Cloud Run sends traffic to one port");
    let port = int(&ports[0]["containerPort"], "containerPort");
    let help = ServeHelp::read();
    let default_port: u64 = help.default_of("--port").parse().expect("a port");
    assert_eq!(port, default_port, "the image's default port");

    let health_path = setting(container, &help, "--health-path");
    let probes = http_probes(container);
    let kinds: Vec<&str> = probes.iter().map(|(kind, ..)| kind.as_str()).collect();
    assert!(
        kinds.contains(&"startup") && kinds.contains(&"liveness"),
        "startup and liveness probes, found {kinds:?}"
    );
    for (kind, path, probe_port) in probes {
        assert_eq!(path, health_path, "{kind} probe path");
        assert_eq!(int(probe_port, "probe port"), port, "{kind} probe port");
    }
}

#[test]
fn cloud_run_limits_match_the_host() {
    for path in [SERVICE, PRIVATE_SERVICE] {
        limits_match_the_host(&revision(path));
    }
}

fn limits_match_the_host(revision: &Value) {
    let spec = &revision["spec"];
    let container = only_container(spec);
    let help = ServeHelp::read();

    let concurrency = int_setting(container, &help, "--max-concurrency");
    assert_eq!(
        int(&spec["containerConcurrency"], "containerConcurrency"),
        concurrency,
        "Cloud Run should send as many requests at once as the host runs"
    );

    let timeout = Duration::from_secs(int(&spec["timeoutSeconds"], "timeoutSeconds"));
    let request_timeout = duration_setting(container, &help, "--request-timeout");
    assert!(
        request_timeout <= timeout,
        "the host's request timeout ({request_timeout:?}) should end a request no later than Cloud Run ({timeout:?})"
    );

    let shutdown_timeout = duration_setting(container, &help, "--shutdown-timeout");
    assert!(
        shutdown_timeout < CLOUD_RUN_GRACE,
        "the drain ({shutdown_timeout:?}) must end before Cloud Run's SIGKILL"
    );

    let environment =
        &revision["metadata"]["annotations"]["run.googleapis.com/execution-environment"];
    assert_eq!(
        environment.as_str(),
        Some("gen2"),
        "the second-generation execution environment, as the README says"
    );
}

#[test]
fn cloud_build_deploys_the_image_it_pushes_with_the_service_manifest() {
    let build = load("deploy/cloudbuild.yaml");
    let steps = build["steps"].as_sequence().expect("build steps");
    let args = |id: &str| -> String {
        let step = steps
            .iter()
            .find(|step| step["id"].as_str() == Some(id))
            .unwrap_or_else(|| panic!("no `{id}` step"));
        let args = step["args"].as_sequence().expect("step args");
        args.iter()
            .map(|arg| str(arg, "an argument"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        args("build").contains("--tag ${_IMAGE}"),
        "build tags ${{_IMAGE}}"
    );
    assert_eq!(args("push"), "push ${_IMAGE}");
    let deploy = args("deploy");
    assert!(
        deploy.contains(SERVICE) && deploy.contains("${_IMAGE}"),
        "the deploy step puts ${{_IMAGE}} into {SERVICE}: {deploy}"
    );
    // The deploy step rewrites every `image:` line; the service has just the one.
    assert_eq!(
        image_lines(&read(SERVICE)),
        1,
        "one image line in {SERVICE}"
    );
    // And it writes the project in, so traces link to Cloud Trace.
    let revision = revision(SERVICE);
    let container = only_container(&revision["spec"]);
    assert_eq!(env(container, PROJECT_VARIABLE), Some("PROJECT_ID"));
    assert!(
        deploy.contains("value:\\) PROJECT_ID|\\1 ${PROJECT_ID}|"),
        "the deploy step fills in {PROJECT_VARIABLE}: {deploy}"
    );
}
