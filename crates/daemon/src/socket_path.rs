//! Taking over a UNIX socket path, shared by the socketmap listener (`server`), the
//! HTTP API (`http`) and the TLS-RPT collector (`tlsrpt`), which all sit above it.
//!
//! A path may be reused only when what is there is a *stale socket*: a socket file nobody
//! accepts (stream) or receives (datagram) on, left by a process that died. Anything else —
//! a regular file, a directory, a symlink, a socket in use — is left alone and reported, so
//! that a typo in `listen` never deletes a file.

use std::io;
use std::path::Path;

/// The kind of socket about to be bound, so the liveness probe speaks its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_STREAM` (socketmap, HTTP).
    Stream,
    /// `SOCK_DGRAM` (TLS-RPT collector).
    Datagram,
}

/// Why a UNIX socket path cannot be taken over.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    /// Something that is not a socket is at the path.
    #[error("a file that is not a socket exists there")]
    NotASocket,
    /// A live process accepts or receives on the socket.
    #[error("another process is listening on it")]
    InUse,
    /// The stale socket cannot be removed.
    #[error("cannot remove the stale socket: {0}")]
    Remove(io::Error),
}

/// What [`check_stale`] found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Nothing: bind away.
    Free,
    /// A socket nobody serves: remove it, then bind.
    Stale,
}

/// Looks at `path` without changing anything: free, a stale socket, or an error.
pub async fn check_stale(path: &Path, kind: SocketKind) -> Result<PathState, SocketPathError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(PathState::Free);
    };
    if !meta.file_type().is_socket() {
        return Err(SocketPathError::NotASocket);
    }
    let live = match kind {
        SocketKind::Stream => tokio::net::UnixStream::connect(path).await.is_ok(),
        SocketKind::Datagram => tokio::net::UnixDatagram::unbound()
            .and_then(|probe| probe.connect(path))
            .is_ok(),
    };
    if live {
        return Err(SocketPathError::InUse);
    }
    Ok(PathState::Stale)
}

/// Makes `path` free for binding: nothing there, or a stale socket that is removed.
pub async fn clear_stale(path: &Path, kind: SocketKind) -> Result<(), SocketPathError> {
    if check_stale(path, kind).await? == PathState::Stale {
        tracing::info!(path = %path.display(), "replacing stale socket file");
        std::fs::remove_file(path).map_err(SocketPathError::Remove)?;
    }
    Ok(())
}

/// Resolves a `socket_group` setting to a group id: a number, or a group name looked up in
/// `/etc/group` (system groups such as `postfix` are always there).
pub fn group_id(group: &str) -> Result<u32, String> {
    group_id_in(
        group,
        &std::fs::read_to_string("/etc/group").unwrap_or_default(),
    )
}

/// [`group_id`] over the text of a group file.
pub fn group_id_in(group: &str, group_file: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    group_file
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?;
            (name == group).then(|| gid.parse::<u32>().ok()).flatten()
        })
        .next()
        .ok_or_else(|| format!("no group `{group}` in /etc/group"))
}

/// Gives a freshly bound socket file its group (when `group` is set) and then its mode.
/// Changing the group needs the daemon to be a member of it (systemd:
/// `SupplementaryGroups=`); the error says so.
pub fn set_group_and_mode(path: &Path, group: Option<&str>, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(group) = group {
        let gid = group_id(group)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            format!(
                "cannot give the socket to group {group} (gid {gid}): {e}; the daemon must be a member of that group (systemd: SupplementaryGroups={group})"
            )
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode {mode:04o}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::group_id_in;

    #[test]
    fn group_names_and_numbers() {
        let file = "root:x:0:\npostfix:x:105:\npostdrop:x:106:\n";
        assert_eq!(group_id_in("postfix", file), Ok(105));
        assert_eq!(group_id_in("0", file), Ok(0));
        assert_eq!(group_id_in("4242", ""), Ok(4242));
        assert!(
            group_id_in("nogroup", file)
                .unwrap_err()
                .contains("nogroup")
        );
        assert!(group_id_in("post", file).is_err());
    }
}
