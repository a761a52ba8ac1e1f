use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `database`: the one SQLite file holding all state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Path of the SQLite file, relative to the config file.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Read connections besides the single writer.
    #[serde(default = "default_readers")]
    pub read_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { path: default_path(), read_connections: default_readers() }
    }
}

fn default_path() -> PathBuf {
    PathBuf::from("appliance.db")
}

fn default_readers() -> u32 {
    4
}

impl DatabaseConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new("database.path", "must not be empty"));
        }
        if !(1..=64).contains(&self.read_connections) {
            return Err(ConfigError::new("database.read_connections", "must be between 1 and 64"));
        }
        Ok(())
    }
}
