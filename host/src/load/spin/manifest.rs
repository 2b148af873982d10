//! Spin application manifests (`spin.toml`, version 2): what this host can run of them.
//!
//! An application here is a set of `wasi:http` components (WASI 0.2 or 0.3) behind HTTP
//! routes, each with its own outbound allowlist, environment, variables, files and
//! key-value stores. Everything else a manifest can ask for needs Spin's own runtime
//! (SQLite, service chaining, Redis triggers, Wagi): it is refused with a message that
//! names it, never ignored, so an application never starts without something it asked
//! for. Keys used only by Spin's tooling (`build`, `tool`, descriptions) are accepted
//! and ignored.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::variables::{self, Declaration, Template};
use crate::sandbox::env::is_valid_key;
use crate::sandbox::outbound::OutboundPattern;

/// The file name `spin up` looks for in a folder.
pub const MANIFEST_FILE: &str = "spin.toml";

/// An application as this host runs it, checked and with paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppManifest {
    /// The application's name.
    pub name: String,
    /// `[variables]`: what the components' variables are made from.
    pub variables: BTreeMap<String, Declaration>,
    /// The components some route runs, in the order of their first route.
    pub components: Vec<ComponentSpec>,
    /// The routes, in manifest order.
    pub routes: Vec<RouteSpec>,
}

/// One component of the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// Its key in the `[component]` table, or `inline-component-N` for the N-th trigger
    /// that defines its component inline.
    pub id: String,
    /// The `.wasm` (or `.cwasm`) file.
    pub source: PathBuf,
    /// Origins it may call (`allowed_outbound_hosts`).
    pub allowed_outbound: Vec<OutboundPattern>,
    /// Its environment, in key order.
    pub environment: Vec<(String, String)>,
    /// Its variables, as templates over the application's.
    pub variables: BTreeMap<String, Template>,
    /// What its `files` entries make visible to it.
    pub files: Vec<FileSpec>,
    /// Glob patterns, relative to the manifest's folder, of files never made visible.
    pub exclude_files: Vec<String>,
    /// The key-value stores it may open (`key_value_stores`).
    pub key_value_stores: Vec<String>,
}

/// One `files` entry, with its source resolved against the manifest's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSpec {
    /// A glob pattern: each matching file appears at its path relative to the manifest's
    /// folder (`pattern` is relative to that folder).
    Pattern(String),
    /// A file or folder made visible at an absolute guest path.
    Mapping {
        /// The file or folder on the host.
        source: PathBuf,
        /// Where the guest sees it.
        destination: String,
    },
}

/// An HTTP route and the component that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The route as written: exact (`/cart`), with `:name` segments, or ending in `/...`.
    pub route: String,
    /// Index into [`AppManifest::components`].
    pub component: usize,
}

/// Whether `path` names a manifest rather than a component: a `.toml` file, or a folder
/// (in which `spin.toml` is looked for, as `spin up` does).
pub fn is_manifest_path(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "toml") || path.is_dir()
}

/// The manifest file `path` names: `path` itself, or `spin.toml` in the folder `path`.
pub fn manifest_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Reads and checks the manifest at `path`; its text is returned too, as read.
pub fn read(path: &Path) -> Result<(AppManifest, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the manifest `{}`", path.display()))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let manifest =
        parse(&text, folder).with_context(|| format!("cannot run `{}`", path.display()))?;
    Ok((manifest, text))
}

/// Parses and checks manifest `text`, resolving relative paths against `folder`.
pub fn parse(text: &str, folder: &Path) -> Result<AppManifest> {
    let document: toml::Table = toml::from_str(text).context("not valid TOML")?;
    match document.get("spin_manifest_version") {
        Some(toml::Value::Integer(2)) => {}
        Some(toml::Value::Integer(1) | toml::Value::String(_)) => bail!(
            "this is a version 1 manifest; this host runs version 2 manifests \
             (`spin_manifest_version = 2`, the format of Spin 2 and later)"
        ),
        Some(other) => bail!("unknown spin_manifest_version {other}; this host runs version 2"),
        None => bail!("no spin_manifest_version: this is not a Spin application manifest"),
    }
    let manifest: Manifest = toml::Value::Table(document)
        .try_into()
        .context("not a Spin application manifest this host can run")?;
    manifest.check(folder)
}

// Fields named `_…` are accepted so that unknown keys can be refused, and not used:
// they describe the application to people and to Spin's tooling, or were checked
// before the typed parse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(rename = "spin_manifest_version")]
    _version: IgnoredAny,
    application: Application,
    #[serde(default)]
    variables: toml::Table,
    #[serde(default)]
    trigger: toml::Table,
    #[serde(default)]
    component: BTreeMap<String, ComponentTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Application {
    name: String,
    #[serde(default)]
    trigger: toml::Table,
    #[serde(rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(rename = "authors")]
    _authors: Option<IgnoredAny>,
    #[serde(rename = "targets")]
    _targets: Option<IgnoredAny>,
    #[serde(rename = "tool")]
    _tool: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTrigger {
    route: Route,
    component: Option<ComponentRef>,
    executor: Option<toml::Table>,
    static_response: Option<IgnoredAny>,
    #[serde(rename = "id")]
    _id: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Route {
    Path(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ComponentRef {
    Named(String),
    Inline(Box<ComponentTable>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentTable {
    source: Source,
    #[serde(default)]
    files: Vec<FileEntry>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    allowed_http_hosts: Option<Vec<String>>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    variables: toml::Table,
    #[serde(default)]
    dependencies: toml::Table,
    #[serde(rename = "dependencies_inherit_configuration")]
    _dependencies_inherit_configuration: Option<IgnoredAny>,
    #[serde(rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(rename = "build")]
    _build: Option<IgnoredAny>,
    #[serde(rename = "tool")]
    _tool: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Source {
    Path(String),
    Url { url: String },
    Registry { package: String, version: String },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileEntry {
    Pattern(String),
    Mapping { source: String, destination: String },
}

impl Manifest {
    fn check(self, folder: &Path) -> Result<AppManifest> {
        let declared = variables::declarations(self.variables)?;
        check_application_triggers(&self.application.trigger)?;
        let mut named = self.component;
        let mut components: Vec<ComponentSpec> = Vec::new();
        let mut routes: Vec<RouteSpec> = Vec::new();
        for (index, trigger) in http_triggers(self.trigger)?.into_iter().enumerate() {
            let route = trigger.checked_route()?;
            let component = match trigger.component {
                None => bail!("route `{route}` names no component"),
                Some(ComponentRef::Named(id)) => match components.iter().position(|c| c.id == id) {
                    Some(existing) => existing,
                    None => {
                        let table = named.remove(&id).with_context(|| {
                                format!("route `{route}` names component `{id}`, which the manifest does not define")
                            })?;
                        components.push(table.check(id, folder, &declared)?);
                        components.len() - 1
                    }
                },
                Some(ComponentRef::Inline(table)) => {
                    let id = format!("inline-component-{index}");
                    components.push(table.check(id, folder, &declared)?);
                    components.len() - 1
                }
            };
            if let Some(earlier) = routes.iter().position(|r| r.route == route) {
                // Spin lets the later of two identical routes win, with a warning.
                tracing::warn!("route `{route}` is defined twice; the later definition wins");
                routes.remove(earlier);
            }
            routes.push(RouteSpec { route, component });
        }
        Ok(AppManifest {
            name: self.application.name,
            variables: declared,
            components,
            routes,
        })
    }
}

/// Refuses application-wide trigger settings, but for Spin 2's base path at `/`.
fn check_application_triggers(triggers: &toml::Table) -> Result<()> {
    for (kind, settings) in triggers {
        // Spin 2's application-wide base path, which Spin 3 dropped, is fine at `/`.
        let root_base = settings.as_table().is_some_and(|settings| {
            settings
                .iter()
                .all(|(key, value)| key == "base" && value.as_str() == Some("/"))
        });
        ensure!(
            kind == "http" && root_base,
            "`[application.trigger.{kind}]` is not supported: this host serves HTTP \
             routes from `/`"
        );
    }
    Ok(())
}

/// The `[[trigger.http]]` entries; any other kind of trigger is refused.
fn http_triggers(triggers: toml::Table) -> Result<Vec<HttpTrigger>> {
    let mut found = None;
    for (kind, value) in triggers {
        if kind != "http" {
            bail!(
                "`[[trigger.{kind}]]` triggers need Spin; this host serves HTTP \
                 triggers (`[[trigger.http]]`) only"
            );
        }
        let http: Vec<HttpTrigger> = value
            .try_into()
            .context("`[[trigger.http]]` is not a list of HTTP triggers")?;
        found = Some(http);
    }
    found
        .filter(|triggers| !triggers.is_empty())
        .context("the manifest has no `[[trigger.http]]` route to serve")
}

impl HttpTrigger {
    /// The trigger's route, once what this host cannot serve of it is refused.
    fn checked_route(&self) -> Result<String> {
        let route = match &self.route {
            Route::Path(route) => absolute_route(route)?,
            Route::Private { private: false } => {
                bail!("a route is a path or `{{ private = true }}`")
            }
            Route::Private { private: true } => bail!(
                "private routes (`route = {{ private = true }}`) are reached through \
                 Spin's local service chaining, which this host does not provide"
            ),
        };
        if let Some(executor) = &self.executor {
            let kind = executor.get("type").and_then(toml::Value::as_str);
            ensure!(
                kind == Some("spin"),
                "route `{route}`: executor {executor} is not supported; this host runs \
                 wasi:http components (`executor = {{ type = \"spin\" }}`, the default)"
            );
        }
        ensure!(
            self.static_response.is_none(),
            "route `{route}`: `static_response` is not supported; serve it from a component"
        );
        Ok(route)
    }
}

impl ComponentTable {
    fn check(
        self,
        id: String,
        folder: &Path,
        declared: &BTreeMap<String, Declaration>,
    ) -> Result<ComponentSpec> {
        let refuse = |what: &str| -> Result<ComponentSpec> {
            bail!("component `{id}` uses {what}, which needs Spin; this host does not provide it")
        };
        if !self.sqlite_databases.is_empty() {
            return refuse("SQLite databases (`sqlite_databases`)");
        }
        if !self.ai_models.is_empty() {
            return refuse("AI models (`ai_models`)");
        }
        if !self.dependencies.is_empty() {
            return refuse("component dependencies (`dependencies`)");
        }
        ensure!(
            self.allowed_http_hosts.is_none(),
            "component `{id}`: `allowed_http_hosts` is the version 1 key; write \
             `allowed_outbound_hosts` with schemes (`https://example.com`)"
        );
        let source = match self.source {
            Source::Path(path) => folder.join(path),
            Source::Url { url, .. } => bail!(
                "component `{id}`: sources downloaded from a URL (`{url}`) are not \
                 supported; download the file and name it in `source`"
            ),
            Source::Registry {
                package, version, ..
            } => bail!(
                "component `{id}`: registry sources (`{package}@{version}`) are not \
                 supported; pull the component and name its file in `source`"
            ),
        };
        let allowed_outbound = self
            .allowed_outbound_hosts
            .iter()
            .map(|entry| outbound_pattern(&id, entry))
            .collect::<Result<_>>()?;
        for key in self.environment.keys() {
            ensure!(
                is_valid_key(key),
                "component `{id}`: `{key}` is not an environment variable name"
            );
        }
        let files = self
            .files
            .into_iter()
            .map(|entry| file_spec(&id, entry, folder))
            .collect::<Result<_>>()?;
        let variables = variables::templates(&id, self.variables, declared)?;
        Ok(ComponentSpec {
            id,
            variables,
            source,
            allowed_outbound,
            environment: self.environment.into_iter().collect(),
            files,
            exclude_files: self.exclude_files,
            key_value_stores: self.key_value_stores,
        })
    }
}

/// A route with a leading `/`, as Spin reads one; routes under Spin's reserved prefix
/// are refused, since Spin would never send them to the application.
fn absolute_route(route: &str) -> Result<String> {
    let route = if route.starts_with('/') {
        route.to_owned()
    } else {
        format!("/{route}")
    };
    ensure!(
        !route.starts_with("/.well-known/spin/"),
        "route `{route}` is under `/.well-known/spin/`, which Spin reserves for itself"
    );
    Ok(route)
}

fn outbound_pattern(id: &str, entry: &str) -> Result<OutboundPattern> {
    ensure!(
        !entry.contains("{{"),
        "component `{id}`: allowed_outbound_hosts entry `{entry}` uses a variable, which \
         needs Spin; write the origin out"
    );
    let host = entry
        .split_once("://")
        .map_or("", |(_, rest)| rest.split([':', '/']).next().unwrap_or(""));
    ensure!(
        host != "self" && !host.ends_with(".spin.internal"),
        "component `{id}`: allowed_outbound_hosts entry `{entry}` is Spin's local service \
         chaining, which this host does not provide"
    );
    entry
        .parse()
        .with_context(|| format!("component `{id}`: allowed_outbound_hosts entry `{entry}`"))
}

fn file_spec(id: &str, entry: FileEntry, folder: &Path) -> Result<FileSpec> {
    match entry {
        FileEntry::Pattern(pattern) => {
            ensure!(
                is_relative_inside(Path::new(&pattern)),
                "component `{id}`: files entry `{pattern}` must be relative to the \
                 manifest's folder and stay inside it (or use `{{ source, destination }}`)"
            );
            Ok(FileSpec::Pattern(pattern))
        }
        FileEntry::Mapping {
            source,
            destination,
        } => {
            ensure!(
                destination.starts_with('/'),
                "component `{id}`: files destination `{destination}` must be an absolute path"
            );
            Ok(FileSpec::Mapping {
                source: folder.join(source),
                destination,
            })
        }
    }
}

fn is_relative_inside(path: &Path) -> bool {
    path.components()
        .all(|part| matches!(part, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_COMPONENTS: &str = r#"
        spin_manifest_version = 2

        [application]
        name = "shop"
        version = "1.0.0"
        authors = ["The shop team"]

        [[trigger.http]]
        route = "/hello"
        component = "hello"

        [[trigger.http]]
        route = "/api/..."
        component = "api"

        [[trigger.http]]
        route = "/users/:id"
        component = "api"

        [component.hello]
        source = "hello.wasm"
        [component.hello.build]
        command = "cargo build --target wasm32-wasip2 --release"

        [component.api]
        source = "api/api.wasm"
        allowed_outbound_hosts = ["https://*.example.com", "http://127.0.0.1:8080"]
        environment = { GREETING = "hi", MODE = "test" }
        files = ["static/*.txt", { source = "assets", destination = "/pictures" }]
        exclude_files = ["static/secret.txt"]
    "#;

    fn parse_here(text: &str) -> Result<AppManifest> {
        parse(text, Path::new("/app"))
    }

    fn refusal(text: &str) -> String {
        format!("{:#}", parse_here(text).expect_err("must be refused"))
    }

    /// A one-route manifest whose component table has `extra` appended.
    fn with_component(extra: &str) -> String {
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
             [component.c]\nsource = \"c.wasm\"\n{extra}\n"
        )
    }

    #[test]
    fn a_manifest_with_two_components_is_read_in_full() {
        let app = parse_here(TWO_COMPONENTS).expect("parses");
        assert_eq!(app.name, "shop");
        assert_eq!(
            app.routes,
            [
                RouteSpec {
                    route: "/hello".into(),
                    component: 0
                },
                RouteSpec {
                    route: "/api/...".into(),
                    component: 1
                },
                RouteSpec {
                    route: "/users/:id".into(),
                    component: 1
                },
            ]
        );
        let api = &app.components[1];
        assert_eq!(api.id, "api");
        assert_eq!(api.source, Path::new("/app/api/api.wasm"));
        assert_eq!(
            api.allowed_outbound,
            [
                "https://*.example.com".parse().unwrap(),
                "http://127.0.0.1:8080".parse().unwrap()
            ]
        );
        assert_eq!(
            api.environment,
            [
                ("GREETING".into(), "hi".into()),
                ("MODE".into(), "test".into())
            ]
        );
        assert_eq!(
            api.files,
            [
                FileSpec::Pattern("static/*.txt".into()),
                FileSpec::Mapping {
                    source: "/app/assets".into(),
                    destination: "/pictures".into()
                }
            ]
        );
        assert_eq!(api.exclude_files, ["static/secret.txt"]);
        assert_eq!(app.components[0].source, Path::new("/app/hello.wasm"));
        assert!(app.components[0].allowed_outbound.is_empty());
    }

    #[test]
    fn inline_components_and_relative_routes_are_accepted() {
        let app = parse_here(
            "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
             [[trigger.http]]\nroute = \"hi\"\ncomponent = { source = \"hi.wasm\" }\n",
        )
        .expect("parses");
        assert_eq!(app.routes[0].route, "/hi");
        assert_eq!(app.components[0].id, "inline-component-0");
    }

    #[test]
    fn what_needs_spin_is_refused_by_name() {
        for (extra, named) in [
            ("sqlite_databases = [\"default\"]", "sqlite_databases"),
            ("ai_models = [\"llama2-chat\"]", "ai_models"),
            (
                "allowed_http_hosts = [\"example.com\"]",
                "allowed_http_hosts",
            ),
            (
                "allowed_outbound_hosts = [\"http://self\"]",
                "local service chaining",
            ),
            (
                "allowed_outbound_hosts = [\"https://{{ host }}\"]",
                "uses a variable",
            ),
            (
                "allowed_outbound_hosts = [\"redis://cache:6379\"]",
                "unsupported scheme `redis`",
            ),
            (
                "[component.c.variables]\nkey = \"{{ nope }}\"",
                "`nope` is not declared",
            ),
            ("files = [\"../secrets/*\"]", "stay inside"),
            (
                "files = [{ source = \"a\", destination = \"rel\" }]",
                "absolute path",
            ),
            ("unknown_key = 1", "unknown field `unknown_key`"),
        ] {
            let message = refusal(&with_component(extra));
            assert!(message.contains(named), "{extra}: {message}");
            assert!(
                message.contains("`c`") || named.starts_with("unknown"),
                "{message}"
            );
        }
    }

    #[test]
    fn other_triggers_and_executors_are_refused_by_name() {
        let redis = "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
                     [[trigger.redis]]\nchannel = \"orders\"\ncomponent = \"c\"\n\
                     [component.c]\nsource = \"c.wasm\"\n";
        assert!(refusal(redis).contains("`[[trigger.redis]]`"));
        let wagi = with_component("").replace(
            "component = \"c\"",
            "component = \"c\"\nexecutor = { type = \"wagi\" }",
        );
        assert!(refusal(&wagi).contains("wagi"));
        let private = with_component("").replace("\"/...\"", "{ private = true }");
        assert!(refusal(&private).contains("local service chaining"));
        let variables = format!("{}\n[variables]\ntoken = {{}}\n", with_component(""));
        assert!(refusal(&variables).contains("`token` needs either a `default`"));
    }

    #[test]
    fn other_manifest_versions_and_sources_are_refused() {
        assert!(refusal("spin_manifest_version = \"1\"\nname = \"a\"").contains("version 1"));
        assert!(refusal("[application]\nname = \"a\"").contains("not a Spin application"));
        let url = with_component("").replace(
            "source = \"c.wasm\"",
            "source = { url = \"https://x/c.wasm\", digest = \"sha256:00\" }",
        );
        assert!(refusal(&url).contains("downloaded from a URL"));
        let missing = with_component("").replace("component = \"c\"", "component = \"d\"");
        assert!(refusal(&missing).contains("component `d`"));
        let none = "spin_manifest_version = 2\n[application]\nname = \"a\"\n";
        assert!(refusal(none).contains("no `[[trigger.http]]`"));
    }
}
