//! The local store: a SQLite file on this instance's disk, in the same table `spin up`
//! keeps its own stores in, so an application finds its data under either. SQLite's
//! file locks let every `--workers` process of one host share the file; instances of a
//! service on other machines each have their own, which is why it is for development
//! and single-instance use. The file is opened on first use, so a host whose guests
//! never touch it writes nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::backend::Backend;

/// How long a write waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file name `spin up` gives its default store, in its `.spin` folder.
pub const DEFAULT_FILE: &str = "sqlite_key_value.db";

/// One named store in a SQLite file.
pub struct LocalStore {
    path: PathBuf,
    /// The store's name: its rows' `store` column.
    name: String,
    connection: Arc<Mutex<Option<Connection>>>,
}

impl LocalStore {
    pub fn new(path: PathBuf, name: &str) -> Self {
        Self {
            path,
            name: name.to_owned(),
            connection: Arc::default(),
        }
    }

    /// Runs `job` on the file's connection, opened on first use, off the async
    /// runtime's threads.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (connection, path, name) = (
            self.connection.clone(),
            self.path.clone(),
            self.name.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut slot = connection.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(open(&path)?);
            }
            let connection = slot.as_mut().expect("opened above");
            job(connection, &name).with_context(|| format!("local store file `{}`", path.display()))
        })
        .await
        .context("the local store's worker thread failed")?
    }
}

/// Opens (creating) the file and its table, its folder too.
fn open(path: &Path) -> Result<Connection> {
    let context = || format!("cannot open the local store file `{}`", path.display());
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        std::fs::create_dir_all(folder).with_context(context)?;
    }
    let connection = Connection::open(path).with_context(context)?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .with_context(context)?;
    // Readers never wait for a writer, in this process or another.
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .with_context(context)?;
    connection
        .execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                PRIMARY KEY (store, key))",
            [],
        )
        .with_context(context)?;
    Ok(connection)
}

const GET: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const SET: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
    ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";

fn get(connection: &Connection, store: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    connection
        .prepare_cached(GET)?
        .query_row(params![store, key], |row| row.get(0))
        .optional()
}

#[async_trait]
impl Backend for LocalStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.run(move |c, store| get(c, store, &key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(move |c, store| c.prepare_cached(SET)?.execute(params![store, key, value]))
            .await
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.run(move |c, store| c.prepare_cached(DELETE)?.execute(params![store, key]))
            .await
            .map(drop)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    async fn keys(&self) -> Result<Vec<String>> {
        self.run(|c, store| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?
                .query_map([store], |row| row.get(0))?
                .collect()
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        let key = key.to_owned();
        let outcome = self
            .run(move |c, store| {
                let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let current = get(&transaction, store, &key)?;
                let Some(next) = added(current.as_deref(), delta) else {
                    return Ok(None);
                };
                transaction.prepare_cached(SET)?.execute(params![
                    store,
                    key,
                    next.to_string().into_bytes()
                ])?;
                transaction.commit()?;
                Ok(Some(next))
            })
            .await?;
        outcome.context("the value is not an integer, or adding to it overflows")
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys = keys.to_vec();
        self.run(move |c, store| keys.iter().map(|key| get(c, store, key)).collect())
            .await
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<()> {
        let pairs = pairs.to_vec();
        self.run(move |c, store| {
            let transaction = c.transaction()?;
            for (key, value) in &pairs {
                transaction
                    .prepare_cached(SET)?
                    .execute(params![store, key, value])?;
            }
            transaction.commit()
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let keys = keys.to_vec();
        self.run(move |c, store| {
            let transaction = c.transaction()?;
            for key in &keys {
                transaction
                    .prepare_cached(DELETE)?
                    .execute(params![store, key])?;
            }
            transaction.commit()
        })
        .await
    }

    async fn swap_if(&self, key: &str, expected: Option<&[u8]>, value: &[u8]) -> Result<bool> {
        let (key, expected, value) = (key.to_owned(), expected.map(<[u8]>::to_vec), value.to_vec());
        self.run(move |c, store| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if get(&transaction, store, &key)? != expected {
                return Ok(false);
            }
            transaction
                .prepare_cached(SET)?
                .execute(params![store, key, value])?;
            transaction.commit()?;
            Ok(true)
        })
        .await
    }
}

/// `current` (absent: 0), a decimal integer, plus `delta`; `None` when it is not one or
/// the sum overflows.
pub fn added(current: Option<&[u8]>, delta: i64) -> Option<i64> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()?
            .trim()
            .parse::<i64>()
            .ok()?,
    };
    current.checked_add(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_each_store_apart_in_one_file_across_reopening() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(".spin").join(DEFAULT_FILE);
        let default = LocalStore::new(path.clone(), "default");
        let other = LocalStore::new(path.clone(), "other");
        default.set("k", b"v").await.unwrap();
        assert_eq!(other.get("k").await.unwrap(), None);
        assert_eq!(default.increment("n", 2).await.unwrap(), 2);
        assert_eq!(default.increment("n", -5).await.unwrap(), -3);
        assert!(default.increment("k", 1).await.is_err(), "not an integer");
        assert!(default.swap_if("k", Some(b"v"), b"w").await.unwrap());
        assert!(!default.swap_if("k", Some(b"v"), b"x").await.unwrap());
        assert!(default.swap_if("new", None, b"1").await.unwrap());
        drop((default, other));

        let reopened = LocalStore::new(path, "default");
        let mut keys = reopened.keys().await.unwrap();
        keys.sort();
        assert_eq!(keys, ["k", "n", "new"]);
        let many = reopened
            .get_many(&["k".into(), "gone".into()])
            .await
            .unwrap();
        assert_eq!(many, [Some(b"w".to_vec()), None]);
        reopened
            .delete_many(&["k".into(), "n".into()])
            .await
            .unwrap();
        assert!(!reopened.exists("k").await.unwrap());
    }

    #[tokio::test]
    async fn an_unwritable_folder_fails_each_call_with_the_path() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let store = LocalStore::new(file.join("store.db"), "default");
        let error = format!("{:#}", store.get("k").await.unwrap_err());
        assert!(error.contains("a-file"), "{error}");
    }
}
