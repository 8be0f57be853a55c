//! `stash render`: what the operator would do with a set of objects, offline, as YAML.

use clap::Args;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use stash_core::plan::{FinalizerAction, Plan, Settings};
use stash_core::world::World;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `stash render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// YAML files or folders (read recursively, `*.yaml` / `*.yml` in name order).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The time to plan at (RFC 3339); default: now.
    #[arg(long)]
    pub now: Option<String>,
    /// Image of the operator and the catalog's Functions.
    #[arg(long, default_value = stash_core::plan::DEFAULT_IMAGE)]
    pub image: String,
    /// Fields a kind does not know: `strict` (default; an error, as the API server's strict
    /// field validation), `warn` (a warning on stderr) or `ignore`; `true`/`false` as kubectl.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "strict",
        num_args = 0..=1,
        default_missing_value = "strict",
        value_parser = parse_validate
    )]
    pub validate: Validate,
}

/// kubectl's `--validate` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validate {
    /// Unknown fields are an error.
    #[default]
    Strict,
    /// Unknown fields are reported on stderr; rendering goes on.
    Warn,
    /// Unknown fields are not looked for.
    Ignore,
}

fn parse_validate(text: &str) -> Result<Validate, String> {
    match text.to_ascii_lowercase().as_str() {
        "strict" | "true" => Ok(Validate::Strict),
        "warn" => Ok(Validate::Warn),
        "ignore" | "false" => Ok(Validate::Ignore),
        _ => Err(format!(
            "{text:?} is not a validation mode: use strict, warn or ignore (true = strict, false = ignore)"
        )),
    }
}

/// What `render` produced: the YAML, and warnings for stderr.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// The plans as YAML.
    pub text: String,
    /// Unknown fields under `--validate=warn`.
    pub warnings: Vec<stash_core::world::LoadError>,
}

/// A failure of `render`, with exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file or folder cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not usable.
    #[error(transparent)]
    Load(#[from] stash_core::world::LoadError),
    /// `--now` does not parse.
    #[error("--now {0:?} is not an RFC 3339 timestamp (e.g. 2026-11-27T15:00:00Z)")]
    Now(String),
    /// Documents have fields their kinds do not know (`--validate=strict`).
    #[error("{}", unknown_fields_text(.0))]
    UnknownFields(Vec<stash_core::world::LoadError>),
    /// Nothing to render.
    #[error("{0}")]
    Empty(String),
}

fn unknown_fields_text(errors: &[stash_core::world::LoadError]) -> String {
    let mut lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.push(
        "unknown fields are rejected (--validate=strict, as the API server's strict field validation); \
         --validate=warn reports them and renders without them"
            .into(),
    );
    lines.join("\n")
}

/// Renders plans for the given paths to YAML.
pub fn render(args: &RenderArgs, default_now: Time) -> Result<Rendered, RenderError> {
    let now = match &args.now {
        Some(text) => Time(text.parse().map_err(|_| RenderError::Now(text.clone()))?),
        None => default_now,
    };
    let mut world = World::with_catalog(&args.image);
    let mut unknown = Vec::new();
    let mut files_read = Vec::new();
    let mut objects = 0;
    for path in &args.files {
        for file in yaml_files(path)? {
            let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Read {
                path: file.display().to_string(),
                source,
            })?;
            let loaded = world.load_yaml(&file.display().to_string(), &text)?;
            objects += loaded.objects;
            unknown.extend(loaded.unknown_fields);
            files_read.push(file.display().to_string());
        }
    }
    if objects == 0 {
        return Err(RenderError::Empty(empty_input_message(args, &files_read)));
    }
    let warnings = match args.validate {
        Validate::Strict if !unknown.is_empty() => return Err(RenderError::UnknownFields(unknown)),
        Validate::Strict | Validate::Ignore => Vec::new(),
        Validate::Warn => unknown,
    };
    let settings = Settings {
        image: args.image.clone(),
        ..Settings::default()
    };
    Ok(Rendered {
        text: plans_to_yaml(&world.plan_all(&settings, &now)),
        warnings,
    })
}

/// Why there is nothing to render, naming what was read.
fn empty_input_message(args: &RenderArgs, files_read: &[String]) -> String {
    let given: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    if files_read.is_empty() {
        format!(
            "no input: {} holds no *.yaml or *.yml files",
            given.join(", ")
        )
    } else {
        format!(
            "no input: {} holds no objects (every YAML document is empty)",
            files_read.join(", ")
        )
    }
}

/// The plans as multi-document YAML: applied objects as manifests, then for each reconciled
/// object its status, deletions, finalizer, events and requeue, each headed by a comment that
/// says in words what the operator would do.
pub fn plans_to_yaml(plans: &[Plan]) -> String {
    let mut out = String::new();
    for plan in plans {
        let Some(obj) = &plan.object else { continue };
        let who = describe_key(obj);
        let mut doc = |comment: String, value: &serde_json::Value| {
            out.push_str(&format!("# {comment}\n---\n"));
            out.push_str(
                &serde_yaml::to_string(value).unwrap_or_else(|e| format!("# unprintable: {e}\n")),
            );
        };
        for object in &plan.apply {
            let what = stash_core::plan::ObjectKey::of(object)
                .map(|k| describe_key(&k))
                .unwrap_or_else(|| "an object".into());
            doc(format!("{who}: apply {what}"), object);
        }
        if let Some(status) = &plan.status {
            let value = serde_json::json!({
                "apiVersion": obj.api_version,
                "kind": obj.kind,
                "metadata": {"name": obj.name, "namespace": obj.namespace},
                "status": status,
            });
            doc(format!("{who}: set its status"), &value);
        }
        for key in &plan.delete {
            let value = serde_json::json!({
                "apiVersion": key.api_version,
                "kind": key.kind,
                "metadata": {"name": key.name, "namespace": key.namespace},
            });
            doc(format!("{who}: delete {}", describe_key(key)), &value);
        }
        for note in plan_notes(plan, &obj.kind) {
            out.push_str(&format!("# {who}: {note}\n"));
        }
    }
    out
}

/// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
fn describe_key(key: &stash_core::plan::ObjectKey) -> String {
    match key.namespace.as_deref() {
        Some(ns) => format!("{} {ns}/{}", key.kind, key.name),
        None => format!("{} {}", key.kind, key.name),
    }
}

/// What a plan does besides applying, deleting and setting status, in words.
fn plan_notes(plan: &Plan, kind: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let finalizer = stash_core::plan::finalizer_for(kind);
    match plan.finalizer {
        FinalizerAction::Keep => {}
        FinalizerAction::Add => notes.push(format!("add the finalizer {finalizer}")),
        FinalizerAction::Remove => notes.push(format!(
            "remove the finalizer {finalizer} (cleanup is done; the object may go)"
        )),
    }
    for e in &plan.events {
        notes.push(format!(
            "publish a {} event \"{}\": {}",
            e.type_, e.reason, e.message
        ));
    }
    if let Some(secs) = plan.requeue_after_seconds {
        notes.push(format!("look again in {secs} seconds"));
    }
    notes
}

/// The YAML files under `path` (itself if a file), in name order.
pub fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let read_err = |source| RenderError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            files.extend(yaml_files(&entry)?);
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(entry);
        }
    }
    Ok(files)
}

/// Runs `render`, printing YAML or an error (exit status 2).
pub fn run(args: &RenderArgs) -> ExitCode {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    match render(args, now) {
        Ok(rendered) => {
            for w in &rendered.warnings {
                eprintln!("stash render: warning: {w}");
            }
            match super::print_stdout(&rendered.text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("stash render: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("stash render: {line}");
            }
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stash_core::plan::{EventSpec, ObjectKey};

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: "stash.appscode.com/v1beta1".into(),
            kind: kind.into(),
            namespace: Some("demo".into()),
            name: name.into(),
        }
    }

    #[test]
    fn comments_say_in_words_what_the_operator_would_do() {
        let plan = Plan {
            object: Some(key("BackupConfiguration", "nightly")),
            finalizer: FinalizerAction::Remove,
            delete: vec![ObjectKey {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                namespace: Some("demo".into()),
                name: "stash-trigger-nightly".into(),
            }],
            events: vec![EventSpec {
                type_: "Warning".into(),
                reason: "CronJob Creation Failed".into(),
                message: "it \"failed\"".into(),
                source: "BackupConfiguration Controller".into(),
                name: None,
            }],
            requeue_after_seconds: Some(5),
            ..Default::default()
        };
        let repository = Plan {
            object: Some(key("Repository", "s3")),
            finalizer: FinalizerAction::Add,
            ..Default::default()
        };
        let text = plans_to_yaml(&[plan, repository]);
        let comments: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            comments,
            [
                "# BackupConfiguration demo/nightly: delete CronJob demo/stash-trigger-nightly",
                "# BackupConfiguration demo/nightly: remove the finalizer stash.appscode.com (cleanup is done; the object may go)",
                "# BackupConfiguration demo/nightly: publish a Warning event \"CronJob Creation Failed\": it \"failed\"",
                "# BackupConfiguration demo/nightly: look again in 5 seconds",
                "# Repository demo/s3: add the finalizer stash",
            ]
        );
    }
}
