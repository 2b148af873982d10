#!/usr/bin/env bash
# Deploys wasi-host as a private service driven by events, with the exact gcloud
# commands: dedicated service accounts, deploy/private/service.yaml (IAM-only, internal
# ingress), `roles/run.invoker` for one calling service, a Pub/Sub push subscription
# that authenticates with an OIDC token, and an Eventarc trigger. Serve an event
# handler such as examples/rust-events in the image (docs/events.md).
#
# Usage: PROJECT_ID=my-project REGION=us-central1 IMAGE=REGION-docker.pkg.dev/... \
#          deploy/private/setup.sh
set -euo pipefail

PROJECT_ID=${PROJECT_ID:?set PROJECT_ID}
REGION=${REGION:?set REGION}
IMAGE=${IMAGE:?set IMAGE to the image to serve}
PROJECT_NUMBER=$(gcloud projects describe "$PROJECT_ID" --format 'value(projectNumber)')

SERVICE=wasi-host-private
# What the service runs as (named in service.yaml), who may call it, and what Pub/Sub
# and Eventarc sign their requests' OIDC tokens as.
RUNTIME_SA=wasi-host-runtime@$PROJECT_ID.iam.gserviceaccount.com
CALLER_SA=wasi-host-caller@$PROJECT_ID.iam.gserviceaccount.com
PUSH_SA=wasi-host-push@$PROJECT_ID.iam.gserviceaccount.com
EVENTS_SA=wasi-host-events@$PROJECT_ID.iam.gserviceaccount.com
PUBSUB_AGENT=service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com

for account in wasi-host-runtime wasi-host-caller wasi-host-push wasi-host-events; do
  gcloud iam service-accounts create "$account" --project "$PROJECT_ID"
done

# The service: the manifest with the project and the image filled in.
MANIFEST=$(mktemp)
sed -e "s|image: .*|image: $IMAGE|" -e "s|PROJECT_ID|$PROJECT_ID|g" \
  deploy/private/service.yaml >"$MANIFEST"
gcloud run services replace "$MANIFEST" --project "$PROJECT_ID" --region "$REGION"
rm "$MANIFEST"
URL=$(gcloud run services describe "$SERVICE" --project "$PROJECT_ID" --region "$REGION" \
  --format 'value(status.url)')

# Who may invoke it: the calling service, the push subscription, the Eventarc trigger.
for invoker in "$CALLER_SA" "$PUSH_SA" "$EVENTS_SA"; do
  gcloud run services add-iam-policy-binding "$SERVICE" --project "$PROJECT_ID" \
    --region "$REGION" --member "serviceAccount:$invoker" --role roles/run.invoker
done

# Pub/Sub push: an OIDC token of PUSH_SA for the service's URL on every request. A
# message answered with anything but 2xx is delivered again, with backoff; after five
# attempts it moves to the dead-letter topic instead of being retried for days.
gcloud pubsub topics create orders --project "$PROJECT_ID"
gcloud pubsub topics create orders-dead-letter --project "$PROJECT_ID"
gcloud pubsub subscriptions create orders-push --project "$PROJECT_ID" \
  --topic orders \
  --push-endpoint "$URL/" \
  --push-auth-service-account "$PUSH_SA" \
  --push-auth-token-audience "$URL" \
  --ack-deadline 60 \
  --dead-letter-topic orders-dead-letter \
  --max-delivery-attempts 5
# The same messages unwrapped: the data as the body, the metadata in headers.
gcloud pubsub subscriptions create orders-push-unwrapped --project "$PROJECT_ID" \
  --topic orders \
  --push-endpoint "$URL/" \
  --push-auth-service-account "$PUSH_SA" \
  --push-auth-token-audience "$URL" \
  --push-no-wrapper --push-no-wrapper-write-metadata \
  --ack-deadline 60 \
  --dead-letter-topic orders-dead-letter \
  --max-delivery-attempts 5
# Pub/Sub's own agent moves messages to the dead-letter topic.
gcloud pubsub topics add-iam-policy-binding orders-dead-letter --project "$PROJECT_ID" \
  --member "serviceAccount:$PUBSUB_AGENT" --role roles/pubsub.publisher
for subscription in orders-push orders-push-unwrapped; do
  gcloud pubsub subscriptions add-iam-policy-binding "$subscription" \
    --project "$PROJECT_ID" --member "serviceAccount:$PUBSUB_AGENT" \
    --role roles/pubsub.subscriber
done

# Eventarc: the topic's messages as CloudEvents (binary mode), signed as EVENTS_SA.
gcloud projects add-iam-policy-binding "$PROJECT_ID" \
  --member "serviceAccount:$EVENTS_SA" --role roles/eventarc.eventReceiver
gcloud eventarc triggers create orders-eventarc --project "$PROJECT_ID" \
  --location "$REGION" \
  --destination-run-service "$SERVICE" \
  --destination-run-region "$REGION" \
  --destination-run-path / \
  --event-filters type=google.cloud.pubsub.topic.v1.messagePublished \
  --transport-topic "projects/$PROJECT_ID/topics/orders" \
  --service-account "$EVENTS_SA"

echo "$SERVICE serves $URL; only $CALLER_SA, $PUSH_SA and $EVENTS_SA may call it"
