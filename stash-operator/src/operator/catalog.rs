//! Start-up: the default MySQL Task/Function catalog, applied with our field manager.

use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use stash_core::api::{Function, Task};
use stash_core::plan::FIELD_MANAGER;

/// Applies every Task and Function of the default catalog for `image`.
pub async fn apply_default_catalog(client: &Client, image: &str) -> Result<usize, kube::Error> {
    let (tasks, functions) = stash_core::catalog::default_catalog(image);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let task_api: Api<Task> = Api::all(client.clone());
    let fn_api: Api<Function> = Api::all(client.clone());
    for f in &functions {
        let name = f.metadata.name.clone().unwrap_or_default();
        fn_api.patch(&name, &params, &Patch::Apply(f)).await?;
    }
    for t in &tasks {
        let name = t.metadata.name.clone().unwrap_or_default();
        task_api.patch(&name, &params, &Patch::Apply(t)).await?;
    }
    Ok(tasks.len() + functions.len())
}
