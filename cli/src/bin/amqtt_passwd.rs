//! `amqtt_passwd`: create, update and delete entries of a password file for
//! `FileAuthPlugin`, like `mosquitto_passwd`. New passwords are hashed with argon2id unless
//! `-H` asks for sha-512 crypt (readable by aMQTT 0.11 and older) or bcrypt.
//!
//! Exit status: 0 on success, 1 when the file cannot be read or written or the user is
//! unknown, 2 on a usage error.
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use amqtt_broker::plugins::password_file::{HashScheme, PasswordFile};
use clap::{Parser, ValueEnum};

/// Manage password files for the amqtt broker's FileAuthPlugin.
#[derive(Debug, Parser)]
#[command(
    name = "amqtt_passwd",
    version,
    after_help = "Examples:\n  amqtt_passwd -c passwd alice          create the file, prompt for alice's password\n  amqtt_passwd -b passwd bob s3cret      add or update bob\n  amqtt_passwd -D passwd bob             delete bob"
)]
struct Args {
    /// Create a new password file; an existing one is overwritten.
    #[arg(short = 'c', long, conflicts_with = "delete")]
    create: bool,
    /// Delete the user from the password file.
    #[arg(short = 'D', long)]
    delete: bool,
    /// Take the password from the command line instead of prompting (it may then show up in
    /// the shell history and the process list).
    #[arg(short = 'b', long, conflicts_with = "delete")]
    batch: bool,
    /// The hash to write.
    #[arg(short = 'H', long = "hash", value_enum, default_value_t = Scheme::Argon2id)]
    hash: Scheme,
    /// The password file.
    password_file: PathBuf,
    /// The user name.
    username: String,
    /// The password (with -b only).
    password: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scheme {
    /// argon2id (what aMQTT 0.12 writes)
    Argon2id,
    /// sha-512 crypt, `$6$` (what `mkpasswd -m sha-512` writes)
    #[value(name = "sha512-crypt")]
    Sha512Crypt,
    /// bcrypt, `$2b$`
    Bcrypt,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.batch != args.password.is_some() {
        eprintln!("amqtt_passwd: give the password on the command line with -b, and only then");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("amqtt_passwd: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let mut file = if args.create {
        PasswordFile::new()
    } else {
        PasswordFile::load(&args.password_file).map_err(|e| e.to_string())?
    };
    if args.delete {
        if !file.remove(&args.username) {
            return Err(format!(
                "user `{}` not found in {}",
                args.username,
                args.password_file.display()
            ));
        }
        return save(&file, &args.password_file);
    }
    let password = match args.password {
        Some(password) => password,
        None => read_password()?,
    };
    let scheme = match args.hash {
        Scheme::Argon2id => HashScheme::Argon2id,
        Scheme::Sha512Crypt => HashScheme::Sha512Crypt,
        Scheme::Bcrypt => HashScheme::Bcrypt,
    };
    file.set_password(&args.username, password.as_bytes(), scheme)
        .map_err(|e| e.to_string())?;
    save(&file, &args.password_file)
}

fn save(file: &PasswordFile, path: &Path) -> Result<(), String> {
    file.save(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Prompts twice on a terminal; reads one line from a pipe.
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Reenter password: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err(String::from("passwords do not match"));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(String::from("empty password on standard input"));
    }
    Ok(password)
}
