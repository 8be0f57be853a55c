//! CustomResourceDefinitions generated from the API types.

use crate::api::{
    AppBinding, BackupConfiguration, BackupSession, Function, Repository, RestoreSession, Task,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD this project serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Repository::crd(),
        BackupConfiguration::crd(),
        BackupSession::crd(),
        RestoreSession::crd(),
        Task::crd(),
        Function::crd(),
        AppBinding::crd(),
    ]
}
