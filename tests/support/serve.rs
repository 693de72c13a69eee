//! `bondledger serve` run as a user runs it: on a free port, its first line
//! read for the address (and the sign-in token on a ledger with none), its
//! logs in a file of the test's directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{binary, TestLedger};

/// How long `serve` may take to print its first line (a `--demo` ledger
/// is loaded first).
const STARTUP: Duration = Duration::from_secs(120);

pub struct Server {
    child: Child,
    /// What `serve` printed first: the address it listens on, or the
    /// sign-in address on a ledger with no token yet.
    pub first_line: String,
    /// `HOST:PORT`.
    pub address: String,
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0 ARGS…` on the test's ledger,
    /// logging at info into `log` in the test's directory.
    pub fn start(test: &TestLedger, args: &[&str], log: &str) -> Server {
        Server::start_with_env(test, args, &[], log)
    }

    /// As [`Server::start`], with extra environment variables.
    pub fn start_with_env(
        test: &TestLedger,
        args: &[&str],
        env: &[(&str, &str)],
        log: &str,
    ) -> Server {
        let log_file = std::fs::File::create(test.dir.path().join(log)).expect("a log file");
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .args(["--database-url", &test.url])
            .current_dir(test.dir.path())
            .env_remove("BONDLEDGER_DATABASE_URL")
            .env("BONDLEDGER_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let first_line = receiver.recv_timeout(STARTUP).unwrap_or_default();
        let address = first_line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ' ', '\n']).next())
            .unwrap_or_default()
            .to_owned();
        assert!(
            !address.is_empty(),
            "serve printed an address: {first_line:?}"
        );
        Server {
            child,
            first_line,
            address,
        }
    }

    /// `http://HOST:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The whole sign-in address, when `serve` printed one.
    pub fn sign_in(&self) -> Option<&str> {
        self.first_line
            .split_whitespace()
            .find(|word| word.starts_with("http://") && word.contains("?token="))
    }

    /// The token of the sign-in address, when `serve` printed one.
    pub fn sign_in_token(&self) -> Option<&str> {
        self.sign_in()?.split("?token=").nth(1)
    }

    /// Sends SIGTERM, as a service manager stopping it would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the server to stop by itself; its exit status.
    pub fn wait(mut self) -> Option<i32> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
