//! Where a registry's login comes from: the credentials given for it, or, for Google's
//! registries, the metadata server.

use super::credentials::{Credentials, Login};
use super::metadata::{MetadataServer, is_google_registry};
use super::transport::Transport;

/// Where a registry's login comes from: the credentials given for it, else, for
/// Google's registries, an access token from the metadata server.
pub struct Logins {
    pub credentials: Credentials,
    pub metadata: MetadataServer,
}

impl Logins {
    /// The login for `registry` (`HOST[:PORT]`), if there is one.
    pub async fn for_registry(&self, transport: &Transport, registry: &str) -> Option<Login> {
        if let Some(login) = self.credentials.for_registry(registry) {
            return Some(login.clone());
        }
        if !is_google_registry(registry) {
            return None;
        }
        match self.metadata.registry_login(transport).await {
            Ok(login) => Some(login),
            Err(error) => {
                tracing::warn!(
                    "no credentials for `{registry}`, and none from the metadata server: \
                     {error:#}"
                );
                None
            }
        }
    }
}
