//! `deploy/gke/`: the Deployment and its Service.

use std::time::Duration;

use serde_yaml::Value;

use crate::help::ServeHelp;
use crate::manifest::{
    duration_setting, env, http_probes, image_lines, int, int_setting, load, only_container, read,
    setting, str,
};

const DEPLOYMENT: &str = "deploy/gke/deployment.yaml";

/// The variable that names the Google Cloud project traces belong to.
const PROJECT_VARIABLE: &str = "GOOGLE_CLOUD_PROJECT";

fn deployment() -> Value {
    let deployment = load(DEPLOYMENT);
    assert_eq!(str(&deployment["kind"], "kind"), "Deployment");
    deployment
}

/// The container port named `name` (a probe's or a Service's named port).
fn named_port(container: &Value, name: &str) -> u64 {
    let ports = container["ports"].as_sequence().expect("container ports");
    let port = ports
        .iter()
        .find(|port| port["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container port named {name}"));
    int(&port["containerPort"], "containerPort")
}

/// A port reference (number or name) resolved against `container`.
fn resolve_port(container: &Value, port: &Value) -> u64 {
    port.as_u64()
        .unwrap_or_else(|| named_port(container, str(port, "a port")))
}

#[test]
fn gke_probes_and_service_reach_the_port_the_host_listens_on() {
    let deployment = deployment();
    let pod = &deployment["spec"]["template"];
    let container = only_container(&pod["spec"]);
    let help = ServeHelp::read();
    let listen_port = int_setting(container, &help, "--port");
    assert_eq!(named_port(container, "http"), listen_port);

    let health_path = setting(container, &help, "--health-path");
    let probes = http_probes(container);
    assert_eq!(probes.len(), 3, "startup, readiness and liveness probes");
    for (kind, path, port) in probes {
        assert_eq!(path, health_path, "{kind} probe path");
        assert_eq!(
            resolve_port(container, port),
            listen_port,
            "{kind} probe port"
        );
    }

    let service = load("deploy/gke/service.yaml");
    assert_eq!(str(&service["kind"], "kind"), "Service");
    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service selects the Deployment's pods"
    );
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"],
        "the Deployment selects its own pods"
    );
    for port in service["spec"]["ports"]
        .as_sequence()
        .expect("service ports")
    {
        assert_eq!(resolve_port(container, &port["targetPort"]), listen_port);
    }
    assert_eq!(
        image_lines(&read(DEPLOYMENT)),
        1,
        "one image line in {DEPLOYMENT}"
    );
}

#[test]
fn gke_grace_period_outlasts_the_drain() {
    let deployment = deployment();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = only_container(pod);
    let grace = Duration::from_secs(int(
        &pod["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    ));
    // Load balancers stop sending to a terminating pod only after a moment: the sleep
    // keeps it serving meanwhile.
    let pre_stop = Duration::from_secs(int(
        &container["lifecycle"]["preStop"]["sleep"]["seconds"],
        "lifecycle.preStop.sleep.seconds",
    ));
    assert!(pre_stop > Duration::ZERO, "a preStop sleep");
    let drain = duration_setting(container, &ServeHelp::read(), "--shutdown-timeout");
    assert!(
        grace > pre_stop + drain,
        "terminationGracePeriodSeconds ({grace:?}) must outlast the preStop sleep ({pre_stop:?}) and the drain ({drain:?})"
    );
}

#[test]
fn gke_runs_the_image_locked_down_as_its_own_user() {
    let deployment = deployment();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = only_container(pod);
    let pod_security = &pod["securityContext"];
    assert_eq!(
        pod_security["runAsNonRoot"].as_bool(),
        Some(true),
        "runAsNonRoot"
    );

    let dockerfile = read("Dockerfile");
    let image_user = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the Dockerfile sets USER");
    let (uid, gid) = image_user
        .split_once(':')
        .unwrap_or((image_user, image_user));
    assert_eq!(
        int(&pod_security["runAsUser"], "runAsUser").to_string(),
        uid
    );
    assert_eq!(
        int(&pod_security["runAsGroup"], "runAsGroup").to_string(),
        gid
    );

    let security = &container["securityContext"];
    assert_eq!(
        security["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        security["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "allowPrivilegeEscalation"
    );
    let dropped = security["capabilities"]["drop"]
        .as_sequence()
        .expect("capabilities.drop");
    assert!(
        dropped.iter().any(|cap| cap.as_str() == Some("ALL")),
        "drop ALL capabilities"
    );
}

#[test]
fn gke_logs_are_cloud_logging_json() {
    let deployment = deployment();
    let container = only_container(&deployment["spec"]["template"]["spec"]);
    let format = env(container, "WASI_HOST_LOG_FORMAT").expect("WASI_HOST_LOG_FORMAT is set");
    // GKE sets no K_SERVICE, so `auto` would mean text.
    assert_eq!(format, "json");
    assert!(
        env(container, PROJECT_VARIABLE).is_some(),
        "{PROJECT_VARIABLE} names the project traces belong to"
    );
}

#[test]
fn gke_runs_one_worker_per_cpu_the_pod_asks_for() {
    let deployment = deployment();
    let container = only_container(&deployment["spec"]["template"]["spec"]);
    let workers = container["env"]
        .as_sequence()
        .expect("container env")
        .iter()
        .find(|var| var["name"].as_str() == Some("WASI_HOST_WORKERS"))
        .expect("WASI_HOST_WORKERS is set: without a CPU limit `auto` counts the node's cores");
    let field = &workers["valueFrom"]["resourceFieldRef"];
    let resource = str(&field["resource"], "resourceFieldRef.resource");
    // An unset limit reads as the node's CPUs: only a resource the container sets counts.
    let (kind, name) = resource.split_once('.').expect("KIND.cpu");
    assert_eq!(name, "cpu", "{resource}");
    let set = &container["resources"][kind]["cpu"];
    assert!(set.as_str().is_some(), "{resource} is not set: {set:?}");
    // Whole CPUs, rounded up: `250m` is one worker.
    assert_eq!(str(&field["divisor"], "resourceFieldRef.divisor"), "1");
}
