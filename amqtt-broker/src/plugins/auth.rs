//! The authentication plugins aMQTT packages: `AnonymousAuthPlugin` and `FileAuthPlugin`
//! (`amqtt.plugins.authentication`).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::Deserialize;

use crate::plugins::password_file::{PasswordFile, Verification};
use crate::plugins::{
    BrokerPlugin, ConfiguredPlugin, ConnectRequest, Hooks, PluginContext, PluginError,
    Reconfiguration,
};

/// `amqtt.plugins.authentication.AnonymousAuthPlugin` (entry point `auth_anonymous`).
///
/// * `allow_anonymous: true` (the default) lets every client in.
/// * `allow_anonymous: false` lets in every client **that sends a user name**, whatever the
///   user name and password: this is aMQTT's documented behaviour, kept for compatibility.
///   It checks no secret, so pair it with [`FileAuthPlugin`] to check passwords; when it is
///   the only authentication configured the broker logs a warning at start-up.
#[derive(Debug)]
pub struct AnonymousAuthPlugin {
    config: AnonymousAuthConfig,
}

/// Config of [`AnonymousAuthPlugin`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnonymousAuthConfig {
    /// Whether clients without a user name may connect (default `true`). Also read as
    /// `allow-anonymous`.
    #[serde(alias = "allow-anonymous", default = "yes")]
    pub allow_anonymous: bool,
}

fn yes() -> bool {
    true
}

impl Default for AnonymousAuthConfig {
    fn default() -> Self {
        AnonymousAuthConfig {
            allow_anonymous: true,
        }
    }
}

impl AnonymousAuthPlugin {
    /// A plugin with this config.
    pub fn new(config: AnonymousAuthConfig) -> AnonymousAuthPlugin {
        AnonymousAuthPlugin { config }
    }
}

impl ConfiguredPlugin for AnonymousAuthPlugin {
    type Config = AnonymousAuthConfig;

    fn build(config: AnonymousAuthConfig, _context: &PluginContext) -> Result<Self, PluginError> {
        Ok(AnonymousAuthPlugin::new(config))
    }
}

#[async_trait]
impl BrokerPlugin for AnonymousAuthPlugin {
    fn hooks(&self) -> Hooks {
        if self.config.allow_anonymous {
            Hooks::AUTHENTICATE
        } else {
            Hooks::AUTHENTICATE | Hooks::USERNAME_ONLY_AUTH
        }
    }

    async fn authenticate(&self, request: &ConnectRequest<'_>) -> Option<bool> {
        if self.config.allow_anonymous {
            return Some(true);
        }
        // aMQTT: any user name is accepted, the password is not checked.
        Some(request.client.username.is_some())
    }
}

/// `amqtt.plugins.authentication.FileAuthPlugin` (entry point `auth_file`).
///
/// Reads `password_file` once, at start-up (a missing file or a malformed line is an error
/// naming `file:line`). A client without a user name is left to other plugins (`None`); an
/// unknown user or a wrong password is refused; a matching password is accepted. Hashes are
/// checked on a blocking thread so the runtime keeps serving other clients.
#[derive(Debug)]
pub struct FileAuthPlugin {
    /// Swapped whole on reload; each check works on the file as it was when it started.
    users: Arc<ArcSwap<PasswordFile>>,
}

/// Config of [`FileAuthPlugin`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileAuthConfig {
    /// The password file. Also read as `password-file`. Without it the plugin logs a warning
    /// and knows no user (every client with a user name is refused), as aMQTT does.
    #[serde(alias = "password-file", default)]
    pub password_file: Option<PathBuf>,
}

impl FileAuthPlugin {
    /// A plugin checking against `users`.
    pub fn new(users: PasswordFile) -> FileAuthPlugin {
        FileAuthPlugin {
            users: Arc::new(ArcSwap::from_pointee(users)),
        }
    }

    /// Reads the password file `config` names (no file: no user, with a warning).
    fn load(config: FileAuthConfig, context: &PluginContext) -> Result<PasswordFile, PluginError> {
        let Some(path) = config.password_file else {
            tracing::warn!(
                plugin = context.plugin_name(),
                "no password_file configured: every client with a user name will be refused"
            );
            return Ok(PasswordFile::new());
        };
        let users = PasswordFile::load(&path).map_err(|source| PluginError::PasswordFile {
            plugin: context.plugin_name().to_owned(),
            source,
        })?;
        tracing::debug!(
            plugin = context.plugin_name(),
            users = users.len(),
            file = %path.display(),
            "password file loaded"
        );
        Ok(users)
    }
}

impl ConfiguredPlugin for FileAuthPlugin {
    type Config = FileAuthConfig;

    fn build(config: FileAuthConfig, context: &PluginContext) -> Result<Self, PluginError> {
        Ok(FileAuthPlugin::new(FileAuthPlugin::load(config, context)?))
    }

    /// Re-reads the password file; a missing or malformed file keeps the old users.
    fn reconfigure(
        &self,
        config: FileAuthConfig,
        context: &PluginContext,
    ) -> Result<Option<Reconfiguration>, PluginError> {
        let users = Arc::new(FileAuthPlugin::load(config, context)?);
        let slot = self.users.clone();
        Ok(Some(Box::new(move || slot.store(users))))
    }
}

#[async_trait]
impl BrokerPlugin for FileAuthPlugin {
    fn hooks(&self) -> Hooks {
        Hooks::AUTHENTICATE
    }

    async fn authenticate(&self, request: &ConnectRequest<'_>) -> Option<bool> {
        let session = request.client;
        let user = session.username.clone()?;
        let users = self.users.load_full();
        if !users.contains(&user) {
            tracing::debug!(client_id = %session.client_id, %user, "unknown user");
            return Some(false);
        }
        let password = request.password.cloned().unwrap_or_default();
        let verdict = tokio::task::spawn_blocking(move || users.verify(&user, &password)).await;
        match verdict {
            Ok(Verification::Match) => Some(true),
            Ok(Verification::Mismatch | Verification::UnknownUser) => {
                tracing::debug!(client_id = %session.client_id, "wrong password");
                Some(false)
            }
            Err(e) => {
                tracing::error!("password check failed: {e}");
                Some(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;

    use super::*;
    use crate::plugins::password_file::HashScheme;
    use crate::plugins::tests::client;

    async fn auth(
        p: &dyn BrokerPlugin,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Option<bool> {
        let info = client("c", user);
        let password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
        p.authenticate(&ConnectRequest {
            client: &info,
            password: password.as_ref(),
        })
        .await
    }

    #[tokio::test]
    async fn anonymous_allowed_lets_everyone_in() {
        let plugin = AnonymousAuthPlugin::new(AnonymousAuthConfig::default());
        assert_eq!(auth(&plugin, None, None).await, Some(true));
        assert_eq!(auth(&plugin, Some("x"), None).await, Some(true));
        assert!(!plugin.hooks().contains(Hooks::USERNAME_ONLY_AUTH));
    }

    #[tokio::test]
    async fn anonymous_refused_still_admits_any_user_name_like_amqtt() {
        let plugin = AnonymousAuthPlugin::new(AnonymousAuthConfig {
            allow_anonymous: false,
        });
        assert_eq!(auth(&plugin, None, None).await, Some(false));
        assert_eq!(
            auth(&plugin, Some("anyone"), Some("wrong")).await,
            Some(true)
        );
        assert!(plugin.hooks().contains(Hooks::USERNAME_ONLY_AUTH));
    }

    #[test]
    fn anonymous_config_reads_both_spellings_and_rejects_unknown_keys() {
        let c: AnonymousAuthConfig = serde_yaml::from_str("allow-anonymous: false").unwrap();
        assert!(!c.allow_anonymous);
        let c: AnonymousAuthConfig = serde_yaml::from_str("allow_anonymous: false").unwrap();
        assert!(!c.allow_anonymous);
        let c: AnonymousAuthConfig = serde_yaml::from_str("{}").unwrap();
        assert!(c.allow_anonymous);
        let err = serde_yaml::from_str::<AnonymousAuthConfig>("allow_anonymus: false")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `allow_anonymus`"), "{err}");
    }

    #[tokio::test]
    async fn file_auth_checks_user_and_password_and_abstains_without_user_name() {
        let mut users = PasswordFile::new();
        users
            .set_password("alice", b"wonderland", HashScheme::Sha512Crypt)
            .unwrap();
        let plugin = FileAuthPlugin::new(users);
        assert_eq!(auth(&plugin, None, Some("wonderland")).await, None);
        assert_eq!(
            auth(&plugin, Some("alice"), Some("wonderland")).await,
            Some(true)
        );
        assert_eq!(
            auth(&plugin, Some("alice"), Some("Wonderland")).await,
            Some(false)
        );
        assert_eq!(auth(&plugin, Some("alice"), None).await, Some(false));
        assert_eq!(
            auth(&plugin, Some("bob"), Some("wonderland")).await,
            Some(false)
        );
    }

    #[test]
    fn file_auth_with_a_missing_file_fails_to_build_naming_plugin_and_path() {
        let context = PluginContext::new().for_plugin("auth_file");
        let err = FileAuthPlugin::build(
            FileAuthConfig {
                password_file: Some(Path::new("/nonexistent/pw").to_path_buf()),
            },
            &context,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("plugins: `auth_file`: password file /nonexistent/pw"),
            "{err}"
        );
    }

    #[test]
    fn file_auth_config_reads_both_spellings() {
        let c: FileAuthConfig = serde_yaml::from_str("password-file: /a").unwrap();
        assert_eq!(c.password_file.as_deref(), Some(Path::new("/a")));
        let c: FileAuthConfig = serde_yaml::from_str("password_file: /b").unwrap();
        assert_eq!(c.password_file.as_deref(), Some(Path::new("/b")));
    }
}
