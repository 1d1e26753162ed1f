//! Secrets given inline, by file, environment variable or systemd credential.

/// Resolve a secret given inline, by file, environment variable or systemd credential.
pub fn resolve_secret(
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
    env: &Option<String>,
    credential: &Option<String>,
) -> Result<Option<String>, String> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    if let Some(f) = file {
        return std::fs::read_to_string(f)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("cannot read secret file {}: {e}", f.display()));
    }
    if let Some(v) = env {
        return std::env::var(v)
            .map(Some)
            .map_err(|_| format!("environment variable {v} is not set"));
    }
    if let Some(c) = credential {
        let dir = std::env::var("CREDENTIALS_DIRECTORY")
            .map_err(|_| format!("credential {c:?} requested but CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"))?;
        let p = std::path::Path::new(&dir).join(c);
        return std::fs::read_to_string(&p)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("cannot read credential {}: {e}", p.display()));
    }
    Ok(None)
}
