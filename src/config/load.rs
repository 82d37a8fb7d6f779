//! Layering of the setting sources (defaults < file < `.env` < environment < flags), the
//! CLI flags, and the README table, all driven by the catalogue in `catalog`.

use std::{collections::HashMap, path::Path};

use clap::{Arg, ArgMatches, Command};
use config::{Config, File, FileFormat};

use super::{
    Settings,
    catalog::{SETTINGS, SettingSpec},
};

/// Why the settings could not be loaded; its text is the one line printed before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("setting `{key}` {why}")]
    Invalid { key: String, why: String },
    #[error("{0}")]
    Source(#[from] config::ConfigError),
    #[error("config file {path}: {why}")]
    File { path: String, why: String },
}

impl ConfigError {
    pub fn invalid(key: &str, why: String) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            why,
        }
    }
}

fn flag_id(spec: &SettingSpec) -> String {
    spec.key.replace('_', "-")
}

/// Adds a `--<setting>` flag for every setting to `command`.
pub fn add_setting_flags(command: Command) -> Command {
    SETTINGS.iter().fold(command, |command, spec| {
        command.arg(
            Arg::new(spec.key)
                .long(flag_id(spec))
                .value_name("VALUE")
                .help(format!("{} [env: {}]", spec.help, spec.env))
                .global(true),
        )
    })
}

/// Builds the settings from defaults < `config_file` < environment (`env` first, then the
/// `dotenv` pairs) < CLI `flags`, then validates them.
pub fn load(
    config_file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    dotenv: &HashMap<String, String>,
    flags: &ArgMatches,
) -> Result<Settings, ConfigError> {
    let mut builder = Config::builder().add_source(Config::try_from(&Settings::default())?);
    if let Some(path) = config_file {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => FileFormat::Toml,
            Some("yaml" | "yml") => FileFormat::Yaml,
            _ => {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    why: "must end in .toml, .yaml or .yml".into(),
                });
            }
        };
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                why: "not found".into(),
            });
        }
        builder = builder.add_source(File::from(path).format(format).required(true));
    }
    for spec in SETTINGS {
        let from_env = env(spec.env).or_else(|| dotenv.get(spec.env).cloned());
        let from_flag = flags.get_one::<String>(spec.key).cloned();
        // The flag wins over the environment; an empty value means "not set" except for lists.
        if let Some(value) = from_flag
            .or(from_env)
            .filter(|v| spec.list || !v.is_empty())
        {
            builder = if spec.list {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(String::from)
                    .collect();
                builder.set_override(spec.key, items)?
            } else {
                builder.set_override(spec.key, value)?
            };
        }
    }
    let settings: Settings = builder.build()?.try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}

/// The README's table of settings, from [`SETTINGS`] and the defaults.
pub fn settings_table() -> String {
    let defaults = serde_json::to_value(Settings::default()).expect("settings serialize");
    let mut table = String::from(
        "| Setting (file key / `--flag`) | Environment | Default | Meaning |\n|---|---|---|---|\n",
    );
    for spec in SETTINGS {
        let default = match (spec.default_note, &defaults[spec.key]) {
            (Some(note), _) => note.to_owned(),
            (None, serde_json::Value::Null) => "unset".to_owned(),
            (None, serde_json::Value::String(s)) => format!("`{s}`"),
            (None, serde_json::Value::Array(items)) if items.is_empty() => "none".to_owned(),
            (None, serde_json::Value::Array(items)) => format!(
                "`{}`",
                items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (None, value) => format!("`{value}`"),
        };
        table.push_str(&format!(
            "| `{}` / `--{}` | `{}` | {} | {} |\n",
            spec.key,
            flag_id(spec),
            spec.env,
            default,
            spec.help
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn matches(args: &[&str]) -> ArgMatches {
        add_setting_flags(Command::new("test"))
            .try_get_matches_from(std::iter::once("test").chain(args.iter().copied()))
            .expect("flags parse")
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn every_field_has_exactly_one_spec() {
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        let mut fields: Vec<_> = defaults.as_object().unwrap().keys().cloned().collect();
        let mut specs: Vec<_> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        fields.sort();
        specs.sort();
        assert_eq!(fields, specs);
    }

    #[test]
    fn the_readme_lists_every_setting_as_the_binary_prints_it() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        assert!(
            readme.contains(&settings_table()),
            "README.md's settings table is stale: paste `kailash-gateway settings` into it"
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let mut file = tempfile("toml");
        writeln!(
            file.1,
            "max_sessions = 10\nbind = \"127.0.0.1:9000\"\ntitle = \"from file\""
        )
        .unwrap();
        let env = env_of(&[
            ("KAILASH_MAX_SESSIONS", "20"),
            ("KAILASH_CORS_ORIGINS", "http://a, http://b"),
        ]);
        let dotenv = HashMap::from([("KAILASH_TITLE".to_string(), "from dotenv".to_string())]);
        let settings = load(
            Some(&file.0),
            &env,
            &dotenv,
            &matches(&["--max-sessions", "30"]),
        )
        .unwrap();
        assert_eq!(settings.max_sessions, 30, "flag beats env beats file");
        assert_eq!(settings.bind, "127.0.0.1:9000", "file beats default");
        assert_eq!(settings.title, "from dotenv", ".env beats file");
        assert_eq!(settings.cors_origins, vec!["http://a", "http://b"]);
        let settings = load(Some(&file.0), &env, &dotenv, &matches(&[])).unwrap();
        assert_eq!(settings.max_sessions, 20, "env beats file");
        std::fs::remove_file(&file.0).unwrap();
    }

    #[test]
    fn yaml_files_work_and_bad_values_name_the_setting() {
        let mut file = tempfile("yaml");
        writeln!(file.1, "session_timeout_minutes: 0.5\nauth_mode: open").unwrap();
        let settings = load(Some(&file.0), env_of(&[]), &HashMap::new(), &matches(&[])).unwrap();
        assert_eq!(settings.session_timeout_minutes, 0.5);
        assert_eq!(settings.auth_mode, super::super::AuthMode::Open);
        std::fs::remove_file(&file.0).unwrap();

        for (env, key) in [
            (("KAILASH_MAX_SESSIONS", "lots"), "max_sessions"),
            (("KAILASH_AUTH_MODE", "sometimes"), "auth_mode"),
            (("KAILASH_BIND", "nowhere"), "bind"),
            (
                ("KAILASH_API_GATEWAY_SECRET", "short"),
                "api_gateway_secret",
            ),
        ] {
            let error = load(None, env_of(&[env]), &HashMap::new(), &matches(&[])).unwrap_err();
            let line = error.to_string();
            assert!(line.contains(key), "{line} should name {key}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    fn tempfile(extension: &str) -> (std::path::PathBuf, std::fs::File) {
        let path =
            std::env::temp_dir().join(format!("kailash-{}.{extension}", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&path).unwrap();
        (path, file)
    }
}
