//! A streaming standby of an embedded cluster (the tests' read replica): `pg_basebackup -R -X stream` from the
//! primary's loopback port into `pgdata.basebackup`, renamed into place once complete (as `initdb`'s cluster is),
//! then started like any embedded cluster. `-R` writes `standby.signal` and the `primary_conninfo` it follows the
//! primary with; it answers read-only queries (hot standby) on its own port. Later starts on the same folder reuse
//! the copy, which catches up from the primary.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::process::Command;
use tracing::info;

use super::{Account, EmbeddedPostgres, Options, find_bin_dir, postgres_account, unreachable_hint};

impl EmbeddedPostgres {
    /// Starts a standby of `primary` (which must listen on TCP, [`Options::tcp_port`]) with its data in
    /// `data_dir`, copying the primary first when `data_dir` holds no cluster yet. `options` are the standby's own
    /// (give it another port).
    pub async fn start_standby(
        primary: &EmbeddedPostgres,
        data_dir: &Path,
        options: Options,
    ) -> Result<EmbeddedPostgres> {
        if primary.tcp_url.is_none() {
            bail!("a standby streams from its primary's TCP port: start the primary with Options::tcp_port");
        }
        let account = postgres_account()?;
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let dir = fs::canonicalize(data_dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        if let Some(account) = account {
            chown(&dir, Some(account.uid), Some(account.gid))?;
        }
        if !dir.join("pgdata/PG_VERSION").is_file() {
            let version =
                fs::read_to_string(primary.dir.join("pgdata/PG_VERSION")).context("the primary's PG_VERSION")?;
            let bin = find_bin_dir(Some(version.trim())).await?;
            base_backup(&bin, primary.port, &dir, account, options.no_sync).await?;
        }
        Self::start_with(&dir, "postgres", options).await
    }
}

async fn base_backup(bin: &Path, primary_port: u16, dir: &Path, account: Option<Account>, no_sync: bool) -> Result<()> {
    let program = bin.join("pg_basebackup");
    if !program.is_file() {
        bail!("no pg_basebackup in {} (Debian: package postgresql-client)", bin.display());
    }
    let tmp = dir.join("pgdata.basebackup");
    // Left by an interrupted copy; it never became the cluster.
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    info!(data_dir = %dir.display(), primary_port, "copying the primary for a standby");
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream", "--checkpoint=fast"]);
    cmd.arg("-p").arg(primary_port.to_string());
    if no_sync {
        cmd.arg("--no-sync");
    }
    cmd.arg("-D").arg(&tmp);
    cmd.current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(account) = account {
        cmd.uid(account.uid).gid(account.gid);
    }
    let out = cmd.output().await.with_context(|| unreachable_hint("running pg_basebackup", dir, account))?;
    if !out.status.success() {
        bail!("pg_basebackup failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    fs::rename(&tmp, dir.join("pgdata")).context("moving the copy into place")
}
