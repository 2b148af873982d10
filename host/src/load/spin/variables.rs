//! A Spin application's variables. `[variables]` declares them, each with a `default`
//! or `required = true` (`secret = true` only keeps a value out of the log); a
//! component's `variables` table gives its own names values made from templates over
//! them (`"{{ api_host }}/v1"`). Values come from the environment the way Spin's env
//! provider reads them (`SPIN_VARIABLE_API_HOST` for `api_host`), else the default, so
//! a Cloud Run secret mounted as an env var reaches the guest. They are resolved when
//! a version loads: a required one with no value stops the load, naming it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use crate::sandbox::variables::is_valid_name;

/// The prefix of the environment variables that give application variables values.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// One entry of `[variables]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

/// A component variable's value: text and application variables in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(String),
}

/// Reads `[variables]`: each a valid name, with a default or required, not both.
pub fn declarations(table: toml::Table) -> Result<BTreeMap<String, Declaration>> {
    let mut declared = BTreeMap::new();
    for (name, value) in table {
        ensure!(
            is_valid_name(&name),
            "variable `{name}`: a name is lower-case letters, digits and `_`, starting with a letter"
        );
        let declaration: Declaration = value.try_into().with_context(|| {
            format!(
                "variable `{name}`: expected `{{ default = \"...\" }}` or `{{ required = true }}`"
            )
        })?;
        ensure!(
            declaration.required != declaration.default.is_some(),
            "variable `{name}` needs either a `default` or `required = true`, not both"
        );
        declared.insert(name, declaration);
    }
    Ok(declared)
}

/// Reads a component's `variables` table: templates over `declared` variables.
pub fn templates(
    component: &str,
    table: toml::Table,
    declared: &BTreeMap<String, Declaration>,
) -> Result<BTreeMap<String, Template>> {
    let mut templates = BTreeMap::new();
    for (name, value) in table {
        let in_variable = || format!("component `{component}`: variable `{name}`");
        ensure!(
            is_valid_name(&name),
            "{}: a name is lower-case letters, digits and `_`, starting with a letter",
            in_variable()
        );
        let toml::Value::String(text) = value else {
            bail!(
                "{}: the value is a string (`\"{{{{ name }}}}\"`)",
                in_variable()
            );
        };
        let template = Template::parse(&text).with_context(in_variable)?;
        for used in template.variables() {
            ensure!(
                declared.contains_key(used),
                "{}: `{used}` is not declared in `[variables]`",
                in_variable()
            );
        }
        templates.insert(name, template);
    }
    Ok(templates)
}

/// Each declared variable's value: from `provided` (the environment, by lower-case
/// name), else its default. Fails, naming them, when required ones have no value.
pub fn resolve(
    declared: &BTreeMap<String, Declaration>,
    provided: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, declaration) in declared {
        match provided.get(name).or(declaration.default.as_ref()) {
            Some(value) => {
                values.insert(name.clone(), value.clone());
            }
            None => missing.push(format!(
                "`{name}` (set ${ENV_PREFIX}{})",
                name.to_uppercase()
            )),
        }
    }
    ensure!(
        missing.is_empty(),
        "the application needs a value for {}",
        missing.join(", ")
    );
    Ok(values)
}

/// A component's variables, its templates filled with the application's `values`.
pub fn render(
    templates: &BTreeMap<String, Template>,
    values: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    templates
        .iter()
        .map(|(name, template)| (name.clone(), template.fill(values)))
        .collect()
}

/// The application variables set in the environment `vars`, by lower-case name.
pub fn from_environment(vars: &[(String, String)]) -> BTreeMap<String, String> {
    vars.iter()
        .filter_map(|(name, value)| {
            let name = name.strip_prefix(ENV_PREFIX)?.to_lowercase();
            Some((name, value.clone()))
        })
        .collect()
}

impl Template {
    /// `text` with `{{ name }}` placeholders.
    fn parse(mut text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        while let Some(open) = text.find("{{") {
            if open > 0 {
                parts.push(Part::Text(text[..open].to_owned()));
            }
            let rest = &text[open + 2..];
            let close = rest.find("}}").context("a `{{` is never closed by `}}`")?;
            let name = rest[..close].trim();
            ensure!(
                is_valid_name(name),
                "`{{{{ {name} }}}}` does not name a variable"
            );
            parts.push(Part::Variable(name.to_owned()));
            text = &rest[close + 2..];
        }
        if !text.is_empty() {
            parts.push(Part::Text(text.to_owned()));
        }
        Ok(Self(parts))
    }

    fn variables(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    fn fill(&self, values: &BTreeMap<String, String>) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Variable(name) => values.get(name).map_or("", String::as_str),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(text: &str) -> BTreeMap<String, Declaration> {
        declarations(toml::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn values_come_from_the_environment_then_the_default() {
        let declared = declared(
            "greeting = { default = \"hello\" }\nupstream = { required = true, secret = true }",
        );
        let env = from_environment(&[
            ("SPIN_VARIABLE_UPSTREAM".into(), "http://up".into()),
            ("HOME".into(), "/root".into()),
        ]);
        let values = resolve(&declared, &env).unwrap();
        assert_eq!(values["greeting"], "hello");
        assert_eq!(values["upstream"], "http://up");
        let error = resolve(&declared, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`upstream` (set $SPIN_VARIABLE_UPSTREAM)"),
            "{error}"
        );
    }

    #[test]
    fn templates_mix_text_and_variables() {
        let declared = declared("host = { default = \"api.example\" }");
        let table = toml::from_str("url = \"https://{{ host }}/v1\"\nplain = \"x\"").unwrap();
        let templates = templates("web", table, &declared).unwrap();
        let values = resolve(&declared, &BTreeMap::new()).unwrap();
        let rendered = render(&templates, &values);
        assert_eq!(rendered["url"], "https://api.example/v1");
        assert_eq!(rendered["plain"], "x");
    }

    #[test]
    fn bad_declarations_and_templates_are_refused() {
        let refused = |text: &str| {
            declarations(toml::from_str(text).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(refused("a = {}").contains("either a `default` or `required = true`"));
        assert!(refused("a = { default = \"x\", required = true }").contains("not both"));
        assert!(refused("Bad = { default = \"x\" }").contains("lower-case letters"));
        let declared = declared("a = { default = \"x\" }");
        let template = |text: &str| {
            templates("web", toml::from_str(text).unwrap(), &declared)
                .map(|_| ())
                .map_err(|error| format!("{error:#}"))
        };
        assert!(
            template("v = \"{{ b }}\"")
                .unwrap_err()
                .contains("`b` is not declared")
        );
        assert!(
            template("v = \"{{ a\"")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(template("v = 1").unwrap_err().contains("is a string"));
        assert!(template("v = \"{{a}}\"").is_ok());
    }
}
