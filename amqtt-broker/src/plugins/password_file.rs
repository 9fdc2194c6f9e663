//! aMQTT / mosquitto-style password files: one `username:hash` per line, `#` comments and blank
//! lines allowed.
//!
//! Hashes are recognised by their prefix: `$6$` (sha-512 crypt, what `mkpasswd -m sha-512`
//! and passlib's `sha512_crypt` write, and what the aMQTT docs name), `$5$` (sha-256 crypt),
//! `$argon2id$` / `$argon2i$` / `$argon2d$` (what aMQTT 0.12 writes) and `$2a$`/`$2b$`/`$2y$`
//! (bcrypt). New entries are written as argon2id.
//!
//! Every line is checked when the file is read: a line that is not `username:hash` with a
//! well-formed hash of a known kind is an error naming `file:line`, so a typo can never
//! become a user without a password. Verifying a password is CPU-heavy by design: call
//! [`PasswordFile::verify`] off the async runtime (`spawn_blocking`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rand::RngCore;

/// A password file held in memory, keeping comments and line order so that it can be edited
/// and written back (as `amqtt_passwd` does).
#[derive(Clone, Debug, Default)]
pub struct PasswordFile {
    lines: Vec<Line>,
    index: HashMap<String, usize>,
}

/// The hash algorithms a password file may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashScheme {
    /// `$argon2id$…` (the default for new entries).
    Argon2id,
    /// `$6$…`, sha-512 crypt (5,000 rounds unless the hash says otherwise).
    Sha512Crypt,
    /// `$2b$…`, bcrypt (cost 12).
    Bcrypt,
}

/// The result of checking a user's password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The user is not in the file.
    UnknownUser,
    /// The password matches the stored hash.
    Match,
    /// The password does not match.
    Mismatch,
}

/// A password file that could not be read or has a malformed line.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("password file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A line is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// A password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl PasswordFile {
    /// An empty file.
    pub fn new() -> PasswordFile {
        PasswordFile::default()
    }

    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        PasswordFile::parse(&text, path)
    }

    /// Parses `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let mut file = PasswordFile::new();
        for (number, raw) in text.lines().enumerate() {
            let line_no = number + 1;
            let malformed = |reason: String| PasswordFileError::Malformed {
                path: path.to_path_buf(),
                line: line_no,
                reason,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let Some((user, hash)) = trimmed.split_once(':') else {
                return Err(malformed(String::from(
                    "expected `username:hash` (no `:` on this line)",
                )));
            };
            let user = user.trim();
            let hash = hash.trim();
            check_username(user).map_err(malformed)?;
            let hash = StoredHash::parse(hash).map_err(malformed)?;
            if let Some(&first) = file.index.get(user) {
                let first_line = file.line_number_of(first);
                return Err(malformed(format!(
                    "user `{user}` appears again (first on line {first_line})"
                )));
            }
            file.index.insert(user.to_owned(), file.lines.len());
            file.lines.push(Line::Entry {
                user: user.to_owned(),
                hash,
            });
        }
        Ok(file)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// The user names, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::Entry { user, .. } => Some(user.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Checks `password` for `user`. CPU-heavy (that is the point of these hashes): call it
    /// from a blocking thread.
    pub fn verify(&self, user: &str, password: &[u8]) -> Verification {
        let Some(hash) = self.index.get(user).and_then(|&i| match self.lines.get(i) {
            Some(Line::Entry { hash, .. }) => Some(hash),
            _ => None,
        }) else {
            return Verification::UnknownUser;
        };
        if hash.verify(password) {
            Verification::Match
        } else {
            Verification::Mismatch
        }
    }

    /// Adds `user` or replaces their password, hashing it with `scheme`.
    pub fn set_password(
        &mut self,
        user: &str,
        password: &[u8],
        scheme: HashScheme,
    ) -> Result<(), HashError> {
        check_username(user).map_err(HashError)?;
        let text = hash_password(password, scheme)?;
        let hash = StoredHash::parse(&text).map_err(HashError)?;
        match self.index.get(user) {
            Some(&i) => {
                if let Some(Line::Entry { hash: old, .. }) = self.lines.get_mut(i) {
                    *old = hash;
                }
            }
            None => {
                self.index.insert(user.to_owned(), self.lines.len());
                self.lines.push(Line::Entry {
                    user: user.to_owned(),
                    hash,
                });
            }
        }
        Ok(())
    }

    /// Removes `user`; returns whether they were there.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.lines.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        true
    }

    /// The file's text, comments kept, one entry per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Entry { user, hash } => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(&hash.text);
                }
                Line::Other(text) => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }

    /// Writes the file to `path` atomically (a temporary file in the same folder, then a
    /// rename). A new file is created readable by its owner only.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0o600);
            options.mode(mode);
        }
        let result = (|| {
            use std::io::Write;
            let mut file = options.open(&tmp)?;
            file.write_all(self.to_text().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn line_number_of(&self, index: usize) -> usize {
        index + 1
    }
}

/// Hashes `password` with `scheme` and a fresh random salt, giving the text stored after
/// `username:`.
pub fn hash_password(password: &[u8], scheme: HashScheme) -> Result<String, HashError> {
    match scheme {
        HashScheme::Argon2id => Argon2::default()
            .hash_password(password)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string())),
        HashScheme::Sha512Crypt => {
            // 12 random bytes become the 16-character salt sha-crypt allows at most.
            let mut salt = [0u8; 12];
            rand::thread_rng().fill_bytes(&mut salt);
            sha_crypt::PasswordHasher::hash_password_with_salt(
                &sha_crypt::ShaCrypt::SHA512,
                password,
                &salt,
            )
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
        }
        HashScheme::Bcrypt => {
            bcrypt::hash(password, bcrypt::DEFAULT_COST).map_err(|e| HashError(e.to_string()))
        }
    }
}

#[derive(Clone, Debug)]
enum Line {
    Entry { user: String, hash: StoredHash },
    Other(String),
}

/// A hash whose shape was checked when the file was read.
#[derive(Clone)]
struct StoredHash {
    kind: HashKind,
    text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HashKind {
    ShaCrypt,
    Argon2,
    Bcrypt,
}

impl StoredHash {
    fn parse(text: &str) -> Result<StoredHash, String> {
        if text.is_empty() {
            return Err(String::from(
                "empty hash (the user would have no password); write one with amqtt_passwd",
            ));
        }
        let kind = if text.starts_with("$6$") || text.starts_with("$5$") {
            check_sha_crypt(text)?;
            HashKind::ShaCrypt
        } else if text.starts_with("$argon2") {
            PasswordHash::new(text).map_err(|e| format!("malformed argon2 hash: {e}"))?;
            HashKind::Argon2
        } else if ["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            check_bcrypt(text)?;
            HashKind::Bcrypt
        } else {
            let shown: String = text.chars().take(4).collect();
            return Err(format!(
                "unsupported hash `{shown}…`: expected `$6$` (sha-512 crypt), `$argon2id$` \
                 or `$2b$` (bcrypt)"
            ));
        };
        Ok(StoredHash {
            kind,
            text: text.to_owned(),
        })
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self.kind {
            HashKind::ShaCrypt => PasswordVerifier::<str>::verify_password(
                &sha_crypt::ShaCrypt::default(),
                password,
                &self.text,
            )
            .is_ok(),
            HashKind::Argon2 => PasswordHash::new(&self.text)
                .is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok()),
            HashKind::Bcrypt => bcrypt::verify(password, &self.text).unwrap_or(false),
        }
    }
}

impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredHash({:?})", self.kind)
    }
}

fn check_username(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err(String::from("empty user name"));
    }
    if user.contains(':') {
        return Err(format!("user name `{user}` contains `:`"));
    }
    if user.chars().any(char::is_control) {
        return Err(String::from("user name contains a control character"));
    }
    Ok(())
}

const CRYPT_ALPHABET: &str = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `$6$[rounds=N$]salt$hash` (and `$5$`): the shape glibc, mkpasswd and passlib write.
fn check_sha_crypt(text: &str) -> Result<(), String> {
    let (id, rest) = text
        .get(1..)
        .and_then(|t| t.split_once('$'))
        .ok_or_else(|| String::from("malformed sha-crypt hash"))?;
    let mut fields: Vec<&str> = rest.split('$').collect();
    if let Some(rounds) = fields.first().and_then(|f| f.strip_prefix("rounds=")) {
        let rounds: u32 = rounds
            .parse()
            .map_err(|_| format!("malformed sha-crypt hash: bad rounds `{rounds}`"))?;
        if sha_crypt::Params::new(rounds).is_err() {
            return Err(format!(
                "sha-crypt rounds {rounds} out of range 1000..=999999999"
            ));
        }
        fields.remove(0);
    }
    let [salt, hash] = fields[..] else {
        return Err(String::from(
            "malformed sha-crypt hash: expected `$id$[rounds=N$]salt$hash`",
        ));
    };
    if salt.len() > 16 {
        return Err(String::from(
            "malformed sha-crypt hash: salt longer than 16 characters",
        ));
    }
    let expected = if id == "6" { 86 } else { 43 };
    if hash.len() != expected || !hash.chars().all(|c| CRYPT_ALPHABET.contains(c)) {
        return Err(format!(
            "malformed sha-crypt hash: expected {expected} characters of `./0-9A-Za-z` after the salt"
        ));
    }
    Ok(())
}

/// `$2b$NN$` followed by 53 characters: 22 of salt and 31 of hash.
fn check_bcrypt(text: &str) -> Result<(), String> {
    let cost = text.get(4..6).and_then(|c| c.parse::<u32>().ok());
    let ok = text.len() == 60
        && text.get(6..7) == Some("$")
        && cost.is_some_and(|c| (4..=31).contains(&c));
    if ok {
        Ok(())
    } else {
        Err(String::from(
            "malformed bcrypt hash: expected `$2b$NN$` and 53 characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The sha-512 crypt vectors of the reference implementation's spec (Drepper), the form
    // glibc, `mkpasswd -m sha-512 --rounds` and passlib write.
    const SHA512_ROUNDS_5000: &str = "$6$rounds=5000$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    const SHA512_ROUNDS_10000: &str = "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.";
    // The same first vector without `rounds=` (5,000 implied), as `mkpasswd -m sha-512` writes.
    const SHA512_IMPLICIT: &str = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";

    fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        PasswordFile::parse(text, Path::new("/etc/amqtt/passwd"))
    }

    #[test]
    fn sha512_crypt_vectors_verify_with_and_without_explicit_rounds() {
        let file = parse(&format!(
            "# users\n\nalice:{SHA512_ROUNDS_5000}\nbob:{SHA512_ROUNDS_10000}\ncarol:{SHA512_IMPLICIT}\n"
        ))
        .unwrap();
        assert_eq!(file.len(), 3);
        assert_eq!(file.verify("alice", b"Hello world!"), Verification::Match);
        assert_eq!(file.verify("bob", b"Hello world!"), Verification::Match);
        assert_eq!(file.verify("carol", b"Hello world!"), Verification::Match);
        assert_eq!(
            file.verify("alice", b"hello world!"),
            Verification::Mismatch
        );
        assert_eq!(file.verify("alice", b""), Verification::Mismatch);
        assert_eq!(
            file.verify("dave", b"Hello world!"),
            Verification::UnknownUser
        );
    }

    #[test]
    fn new_entries_are_argon2id_and_verify() {
        let mut file = PasswordFile::new();
        file.set_password("alice", b"pw1", HashScheme::Argon2id)
            .unwrap();
        let text = file.to_text();
        assert!(text.starts_with("alice:$argon2id$v=19$"), "{text}");
        let reread = parse(&text).unwrap();
        assert_eq!(reread.verify("alice", b"pw1"), Verification::Match);
        assert_eq!(reread.verify("alice", b"pw2"), Verification::Mismatch);
    }

    #[test]
    fn sha512_and_bcrypt_entries_round_trip() {
        let mut file = PasswordFile::new();
        file.set_password("s", b"pw", HashScheme::Sha512Crypt)
            .unwrap();
        // Cost 4 keeps the test fast; `HashScheme::Bcrypt` writes cost 12.
        let bcrypt_hash = bcrypt::hash(b"pw", 4).unwrap();
        let text = format!("{}b:{bcrypt_hash}\n", file.to_text());
        assert!(text.contains("s:$6$"), "{text}");
        assert!(text.contains("b:$2b$04$"), "{text}");
        let reread = parse(&text).unwrap();
        for user in ["s", "b"] {
            assert_eq!(reread.verify(user, b"pw"), Verification::Match);
            assert_eq!(reread.verify(user, b"px"), Verification::Mismatch);
        }
    }

    #[test]
    fn updating_and_removing_keeps_comments_and_order() {
        let mut file = parse(&format!(
            "# head\nalice:{SHA512_IMPLICIT}\n# mid\nbob:{SHA512_ROUNDS_5000}\n"
        ))
        .unwrap();
        file.set_password("alice", b"new", HashScheme::Sha512Crypt)
            .unwrap();
        assert!(file.remove("bob"));
        assert!(!file.remove("bob"));
        file.set_password("carol", b"c", HashScheme::Sha512Crypt)
            .unwrap();
        let text = file.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# head");
        assert!(lines[1].starts_with("alice:$6$"));
        assert_eq!(lines[2], "# mid");
        assert!(lines[3].starts_with("carol:$6$"));
        assert_eq!(lines.len(), 4);
        assert_eq!(file.verify("alice", b"new"), Verification::Match);
        assert_eq!(file.verify("carol", b"c"), Verification::Match);
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "carol"]);
    }

    #[test]
    fn malformed_lines_are_errors_naming_file_and_line() {
        let cases = [
            ("alice", 1, "no `:`"),
            ("alice:", 1, "empty hash"),
            (":$6$x$y", 1, "empty user name"),
            ("# ok\nalice:plaintext", 2, "unsupported hash"),
            ("alice:$6$salt$short", 1, "86 characters"),
            ("alice:$6$rounds=10$salt$x", 1, "out of range"),
            ("alice:$6$rounds=abc$salt$x", 1, "bad rounds"),
            ("alice:$argon2id$v=19$garbage", 1, "malformed argon2"),
            ("alice:$2b$12$short", 1, "malformed bcrypt"),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("/etc/amqtt/passwd:{line}: ")),
                "{text:?}: {msg}"
            );
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }

    #[test]
    fn a_user_listed_twice_is_an_error() {
        let err = parse(&format!(
            "alice:{SHA512_IMPLICIT}\n\nalice:{SHA512_ROUNDS_5000}\n"
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/amqtt/passwd:3: user `alice` appears again (first on line 1)"
        );
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_the_path() {
        let err = PasswordFile::load(Path::new("/nonexistent/amqtt-passwd")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("password file /nonexistent/amqtt-passwd: "));
    }

    #[test]
    fn save_writes_atomically_and_reloads() {
        let dir = std::env::temp_dir().join(format!("amqtt-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passwd");
        let mut file = PasswordFile::new();
        file.set_password("u", b"p", HashScheme::Sha512Crypt)
            .unwrap();
        file.save(&path).unwrap();
        let loaded = PasswordFile::load(&path).unwrap();
        assert_eq!(loaded.verify("u", b"p"), Verification::Match);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
