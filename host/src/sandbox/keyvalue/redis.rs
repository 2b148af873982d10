//! A Redis store (Memorystore, or any Redis 6+), shared by every instance of a service.
//! One multiplexed connection per store serves every guest of the process at once; it
//! is made on first use and remade after a failure (redis' `ConnectionManager`), so a
//! host starts while Redis is down and recovers when it is back, and every call has a
//! deadline.

use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    AsyncCommands, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Script,
    TlsCertificates,
};

use super::backend::Backend;

/// Sets a key to a value if it holds the expected one (`ARGV[1]` is `1`, the value
/// `ARGV[2]`) or is absent (`ARGV[1]` is `0`), in one step on the server.
const SWAP_IF: &str = r"
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '1' and current == ARGV[2]) or (ARGV[1] == '0' and not current) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0";

/// How a Redis store connects.
#[derive(Clone)]
pub struct RedisSettings {
    /// Longest a connection attempt, or one command's answer, may take.
    pub timeout: Duration,
    /// The AUTH password, for a URL that carries none.
    pub password: Option<String>,
    /// The CA certificates (PEM) a server over TLS is verified against, instead of the
    /// built-in public roots.
    pub ca: Option<Vec<u8>>,
}

/// A client for `info`, verifying a server over TLS against the settings' CA, if any.
fn client(info: ConnectionInfo, settings: &RedisSettings) -> redis::RedisResult<Client> {
    match (&settings.ca, info.addr()) {
        (Some(ca), ConnectionAddr::TcpTls { .. }) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        _ => Client::open(info),
    }
}

/// One Redis database.
pub struct RedisStore {
    connection: ConnectionManager,
    timeout: Duration,
    /// The URL without its password, for messages.
    shown: String,
}

impl RedisStore {
    /// A store at `url` (`redis://` or `rediss://` for TLS); nothing is connected yet.
    pub fn new(url: &str, settings: &RedisSettings) -> Result<Self> {
        let shown = redacted(url);
        let mut info = url
            .into_connection_info()
            .with_context(|| format!("`{shown}` is not a Redis URL"))?;
        if let (None, Some(password)) = (info.redis_settings().password(), &settings.password) {
            let redis = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis);
        }
        let client = client(info, settings).context("cannot make a Redis client")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .with_context(|| format!("cannot set up the connection to Redis at {shown}"))?;
        Ok(Self {
            connection,
            timeout: settings.timeout,
            shown,
        })
    }

    /// Runs `command` on the connection within the deadline.
    async fn run<T, F>(&self, command: impl FnOnce(ConnectionManager) -> F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let answer = tokio::time::timeout(self.timeout, command(self.connection.clone()))
            .await
            .with_context(|| {
                format!(
                    "Redis at {} did not answer within {:?}",
                    self.shown, self.timeout
                )
            })?;
        answer.with_context(|| format!("Redis at {}", self.shown))
    }
}

#[async_trait]
impl Backend for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.run(|mut c| async move { c.get(key).await }).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.run(|mut c| async move { c.set(key, value).await })
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run(|mut c| async move { c.del(key).await }).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.run(|mut c| async move { c.exists(key).await }).await
    }

    async fn keys(&self) -> Result<Vec<String>> {
        self.run(|mut c| async move {
            let mut keys = Vec::new();
            let mut scan = c.scan::<String>().await?;
            while let Some(key) = scan.next_item().await {
                keys.push(key?);
            }
            Ok(keys)
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        self.run(|mut c| async move { c.incr(key, delta).await })
            .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await })
            .await
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.run(|mut c| async move { c.mset(pairs).await }).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.run(|mut c| async move { c.del(keys).await }).await
    }

    async fn swap_if(&self, key: &str, expected: Option<&[u8]>, value: &[u8]) -> Result<bool> {
        let script = Script::new(SWAP_IF);
        let mut invocation = script.key(key);
        invocation
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(value);
        let swapped: i64 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(swapped == 1)
    }
}

/// `url` without the password it may carry.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redacted("rediss://default:s3cret@10.0.0.3:6378/0"),
            "rediss://default:***@10.0.0.3:6378/0"
        );
        assert_eq!(redacted("redis://:s3cret@h"), "redis://:***@h");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }
}
