//! `stash render`: what the operator would do with a set of objects, offline, as YAML.

use clap::Args;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use stash_core::plan::{Plan, Settings};
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
}

/// Renders plans for the given paths to YAML.
pub fn render(args: &RenderArgs, default_now: Time) -> Result<String, RenderError> {
    let now = match &args.now {
        Some(text) => Time(text.parse().map_err(|_| RenderError::Now(text.clone()))?),
        None => default_now,
    };
    let mut world = World::with_catalog(&args.image);
    for path in &args.files {
        for file in yaml_files(path)? {
            let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Read {
                path: file.display().to_string(),
                source,
            })?;
            world.load_yaml(&file.display().to_string(), &text)?;
        }
    }
    let settings = Settings {
        image: args.image.clone(),
        ..Settings::default()
    };
    Ok(plans_to_yaml(&world.plan_all(&settings, &now)))
}

/// The plans as multi-document YAML: applied objects as manifests, then for each reconciled
/// object its status, deletions, events and requeue, each headed by a comment.
pub fn plans_to_yaml(plans: &[Plan]) -> String {
    let mut out = String::new();
    for plan in plans {
        let Some(obj) = &plan.object else { continue };
        let who = format!(
            "{} {}/{}",
            obj.kind,
            obj.namespace.as_deref().unwrap_or(""),
            obj.name
        );
        let mut doc = |comment: String, value: &serde_json::Value| {
            out.push_str(&format!("# {comment}\n---\n"));
            out.push_str(
                &serde_yaml::to_string(value).unwrap_or_else(|e| format!("# unprintable: {e}\n")),
            );
        };
        for object in &plan.apply {
            doc(format!("{who}: apply"), object);
        }
        if let Some(status) = &plan.status {
            let value = serde_json::json!({
                "apiVersion": obj.api_version,
                "kind": obj.kind,
                "metadata": {"name": obj.name, "namespace": obj.namespace},
                "status": status,
            });
            doc(format!("{who}: status"), &value);
        }
        for key in &plan.delete {
            let value = serde_json::json!({
                "apiVersion": key.api_version,
                "kind": key.kind,
                "metadata": {"name": key.name, "namespace": key.namespace},
            });
            doc(format!("{who}: delete"), &value);
        }
        let mut notes = Vec::new();
        if plan.finalizer != stash_core::plan::FinalizerAction::Keep {
            notes.push(format!("finalizer: {:?}", plan.finalizer));
        }
        for e in &plan.events {
            notes.push(format!("event {} {:?}: {}", e.type_, e.reason, e.message));
        }
        if let Some(r) = plan.requeue_after_seconds {
            notes.push(format!("requeue after {r}s"));
        }
        for n in notes {
            out.push_str(&format!("# {who}: {n}\n"));
        }
    }
    out
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
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stash render: {e}");
            ExitCode::from(2)
        }
    }
}
