//! `amqtt_passwd` run as a binary: create, update, delete, and errors.

use std::path::PathBuf;

use amqtt_broker::plugins::password_file::{PasswordFile, Verification};
use assert_cmd::Command;
use predicates::str::contains;

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("amqtt-passwd-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("passwd")
}

fn passwd() -> Command {
    Command::cargo_bin("amqtt_passwd").unwrap()
}

#[test]
fn create_update_and_delete_entries() {
    let path = temp_file("cud");
    passwd()
        .args(["-c", "-b"])
        .arg(&path)
        .args(["alice", "first"])
        .assert()
        .success();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("alice:$argon2id$"), "{text}");

    // Add a user with sha-512 crypt from a pipe, then update alice.
    passwd()
        .args(["-H", "sha512-crypt"])
        .arg(&path)
        .arg("bob")
        .write_stdin("builder\n")
        .assert()
        .success();
    passwd()
        .arg("-b")
        .arg(&path)
        .args(["alice", "second"])
        .assert()
        .success();
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(file.verify("alice", b"second"), Verification::Match);
    assert_eq!(file.verify("alice", b"first"), Verification::Mismatch);
    assert_eq!(file.verify("bob", b"builder"), Verification::Match);
    assert!(std::fs::read_to_string(&path).unwrap().contains("bob:$6$"));

    passwd()
        .arg("-D")
        .arg(&path)
        .arg("alice")
        .assert()
        .success();
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.users().collect::<Vec<_>>(), ["bob"]);

    passwd()
        .arg("-D")
        .arg(&path)
        .arg("alice")
        .assert()
        .code(1)
        .stderr(contains("user `alice` not found"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_missing_file_without_create_and_a_malformed_file_are_errors() {
    let path = temp_file("errors");
    passwd()
        .arg("-b")
        .arg(&path)
        .args(["u", "p"])
        .assert()
        .code(1)
        .stderr(contains("password file"));
    std::fs::write(&path, "# users\nu:nohash\n").unwrap();
    passwd()
        .arg("-b")
        .arg(&path)
        .args(["u", "p"])
        .assert()
        .code(1)
        .stderr(contains(format!("{}:2: unsupported hash", path.display())));
    // The broken file is left as it was.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# users\nu:nohash\n"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn usage_errors_exit_with_2() {
    passwd().assert().code(2);
    passwd().args(["-b", "f", "u"]).assert().code(2);
    passwd().args(["-c", "-D", "f", "u"]).assert().code(2);
}
