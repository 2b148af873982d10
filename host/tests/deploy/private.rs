//! The private variant, `deploy/private/`: a service no one may call without an IAM
//! grant, reachable only from inside, running as its own account, and the exact gcloud
//! commands in `setup.sh` that grant its callers, push Pub/Sub messages to it with an
//! OIDC token and route Eventarc events to it.

use crate::cloud_run::{PRIVATE_SERVICE, revision};
use crate::manifest::{load, read, str};

const SETUP: &str = "deploy/private/setup.sh";

/// The gcloud commands of `setup.sh`, each on one line (continuations joined), with
/// the script's variables left as written.
fn gcloud_commands() -> Vec<String> {
    read(SETUP)
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("gcloud "))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The one command that starts with `prefix`.
fn command(prefix: &str) -> String {
    let found: Vec<String> = gcloud_commands()
        .into_iter()
        .filter(|command| command.starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{prefix}` command in {SETUP}: {found:?}"
    );
    found[0].clone()
}

/// The value the script gives `name` (`NAME=value` at the start of a line).
fn script_variable(name: &str) -> String {
    read(SETUP)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{SETUP} sets no {name}"))
        .to_owned()
}

#[test]
fn the_private_service_is_internal_and_runs_as_its_own_account() {
    let service = load(PRIVATE_SERVICE);
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(
        annotations["run.googleapis.com/ingress"].as_str(),
        Some("internal"),
        "internal ingress"
    );
    assert!(
        annotations["run.googleapis.com/invoker-iam-disabled"].is_null(),
        "the IAM check stays on"
    );
    let name = str(&service["metadata"]["name"], "the service name");
    assert_eq!(script_variable("SERVICE"), name);

    let account = str(
        &revision(PRIVATE_SERVICE)["spec"]["serviceAccountName"],
        "serviceAccountName",
    )
    .to_owned();
    assert_eq!(
        account.replace("PROJECT_ID", "$PROJECT_ID"),
        script_variable("RUNTIME_SA"),
        "the account setup.sh creates"
    );
    assert!(read(SETUP).contains("for account in wasi-host-runtime "));
    let deploy = command("gcloud run services replace");
    assert!(read(SETUP).contains("deploy/private/service.yaml >\"$MANIFEST\""));
    assert!(deploy.contains("\"$MANIFEST\""), "{deploy}");
}

#[test]
fn only_the_named_accounts_may_invoke_it() {
    let setup = read(SETUP);
    assert!(!setup.contains("allUsers") && !setup.contains("allAuthenticatedUsers"));
    assert!(!setup.contains("--allow-unauthenticated"));
    let binding = command("gcloud run services add-iam-policy-binding");
    assert!(
        binding.contains("--member \"serviceAccount:$invoker\" --role roles/run.invoker"),
        "{binding}"
    );
    assert!(
        setup.contains("for invoker in \"$CALLER_SA\" \"$PUSH_SA\" \"$EVENTS_SA\"; do"),
        "the caller, the push subscription and the trigger are the invokers"
    );
}

#[test]
fn pubsub_pushes_with_an_oidc_token_and_dead_letters_what_keeps_failing() {
    let subscriptions: Vec<String> = gcloud_commands()
        .into_iter()
        .filter(|command| command.starts_with("gcloud pubsub subscriptions create"))
        .collect();
    assert_eq!(subscriptions.len(), 2, "{subscriptions:?}");
    for subscription in &subscriptions {
        for part in [
            "--push-endpoint \"$URL/\"",
            "--push-auth-service-account \"$PUSH_SA\"",
            "--push-auth-token-audience \"$URL\"",
            "--dead-letter-topic orders-dead-letter",
            "--max-delivery-attempts 5",
        ] {
            assert!(subscription.contains(part), "{part} in {subscription}");
        }
        let deadline: u64 = subscription
            .split("--ack-deadline ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("an --ack-deadline in {subscription}"));
        assert!(
            (10..=600).contains(&deadline),
            "Pub/Sub's range: {deadline}"
        );
    }
    assert!(
        subscriptions[1].contains("--push-no-wrapper --push-no-wrapper-write-metadata"),
        "the second subscription is the unwrapped one"
    );
    let dead_letter = command("gcloud pubsub topics add-iam-policy-binding orders-dead-letter");
    assert!(dead_letter.contains("$PUBSUB_AGENT\" --role roles/pubsub.publisher"));
}

#[test]
fn eventarc_delivers_pubsub_messages_to_the_service_as_its_own_account() {
    let trigger = command("gcloud eventarc triggers create");
    for part in [
        "--destination-run-service \"$SERVICE\"",
        "--event-filters type=google.cloud.pubsub.topic.v1.messagePublished",
        "--transport-topic \"projects/$PROJECT_ID/topics/orders\"",
        "--service-account \"$EVENTS_SA\"",
    ] {
        assert!(trigger.contains(part), "{part} in {trigger}");
    }
    let receiver = command("gcloud projects add-iam-policy-binding");
    assert!(
        receiver.contains("$EVENTS_SA\" --role roles/eventarc.eventReceiver"),
        "{receiver}"
    );
}
