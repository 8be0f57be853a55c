//! `stash crds`: the CustomResourceDefinitions as multi-document YAML.

use std::process::ExitCode;

/// The CRDs as one multi-document YAML text.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in stash_core::crd::crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// Prints the CRDs.
pub fn run() -> ExitCode {
    let written = crds_yaml()
        .map_err(|e| e.to_string())
        .and_then(|text| super::print_stdout(&text).map_err(|e| e.to_string()));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stash crds: {e}");
            ExitCode::FAILURE
        }
    }
}
