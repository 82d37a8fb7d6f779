//! Where the signing material comes from: the HS256 secret from the configuration, or —
//! only in the single-node embedded default — generated once into the data directory
//! (mode 0600) and reused on every later start; and the RS256/EdDSA private keys of
//! `jwt_keys_dir`.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::PathBuf,
};

use super::token::PrivateKey;
use crate::config::{MIN_SECRET_BYTES, Secret, Settings};

const SECRET_FILE: &str = "jwt_secret";

/// The secret and where it came from.
#[derive(Debug)]
pub enum SigningSecret {
    Configured(Secret),
    Stored {
        secret: Secret,
        path: PathBuf,
    },
    /// Newly generated: the caller announces it (and a ready-to-use token) once.
    Generated {
        secret: Secret,
        path: PathBuf,
    },
}

impl SigningSecret {
    pub fn secret(&self) -> &Secret {
        match self {
            Self::Configured(secret)
            | Self::Stored { secret, .. }
            | Self::Generated { secret, .. } => secret,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot use the secret file {path}: {why}")]
    File { path: PathBuf, why: String },
}

/// The configured secret, else the data directory's, else a new one stored there.
/// Settings validation has already refused a missing secret outside the embedded default.
pub fn resolve(settings: &Settings) -> Result<SigningSecret, SecretError> {
    if let Some(secret) = &settings.api_gateway_secret {
        return Ok(SigningSecret::Configured(secret.clone()));
    }
    let path = settings.data_dir.join(SECRET_FILE);
    let file_error = |why: String| SecretError::File {
        path: path.clone(),
        why,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(file_error(format!(
                    "holds fewer than {MIN_SECRET_BYTES} bytes"
                )));
            }
            Ok(SigningSecret::Stored {
                secret: Secret::new(secret),
                path,
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&settings.data_dir)
                .map_err(|e| file_error(format!("cannot create its directory: {e}")))?;
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| file_error(format!("no randomness: {e}")))?;
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| file_error(e.to_string()))?;
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| file_error(e.to_string()))?;
            Ok(SigningSecret::Generated {
                secret: Secret::new(secret),
                path,
            })
        }
        Err(error) => Err(file_error(error.to_string())),
    }
}

/// The private keys of `jwt_keys_dir` (`<kid>.pem`), for RS256 or EdDSA signing.
pub fn signing_keys(settings: &Settings) -> Result<Vec<PrivateKey>, SecretError> {
    let Some(dir) = &settings.jwt_keys_dir else {
        return Ok(Vec::new());
    };
    let fail = |why: String| SecretError::File {
        path: dir.clone(),
        why,
    };
    let mut keys = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| fail(e.to_string()))? {
        let path = entry.map_err(|e| fail(e.to_string()))?.path();
        if path.extension().is_none_or(|e| e != "pem") {
            continue;
        }
        let kid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| fail(format!("{} is not a UTF-8 key id", path.display())))?
            .to_owned();
        let pem = fs::read(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        keys.push(PrivateKey { kid, pem });
    }
    if keys.is_empty() {
        return Err(fail(
            "holds no <kid>.pem key (e.g. openssl genpkey -algorithm ed25519 -out 2026-11.pem)"
                .into(),
        ));
    }
    Ok(keys)
}
