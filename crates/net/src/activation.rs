//! systemd socket activation (sd_listen_fds(3)): listening sockets passed by the service
//! manager instead of bound by the service.
//!
//! The protocol, as systemd implements it: when `$LISTEN_PID` is this process's pid and
//! `$LISTEN_FDS` is `n ≥ 1`, descriptors `3 .. 3+n` are inherited listeners, in the order of
//! the `.socket` unit's `Listen*=` lines; `$LISTEN_FDNAMES` (optional) names them,
//! `:`-separated, from each unit's `FileDescriptorName=` (default: the unit's name). The
//! variables are meant for this process only: a `$LISTEN_PID` that is not ours means they
//! were inherited from a parent and nothing is taken.
//!
//! Which descriptor serves which listener ([`plan`], pure logic): each service names its
//! [`Role`]s (the daemon `socketmap`, `http`; the policy host `https`, `http`). When at least
//! one of `$LISTEN_FDNAMES` is a role name, descriptors are matched by name (several share a
//! name only for a role that takes [`Role::many`], such as the policy host's `https`
//! listeners) and the others are left unused; otherwise (no names, or systemd's default
//! names) the first descriptor takes the first role, the second the second, and so on.
//!
//! [`Inherited::from_env`] reads the variables, plans, and takes the descriptors (as std
//! listeners, through the `listenfd` crate, which checks each is a stream socket of the
//! family asked for, marks it close-on-exec and takes no descriptor twice): a UNIX socket or
//! a TCP one, whichever it is. It must run before the process starts threads: `listenfd`
//! unsets `$LISTEN_PID` and `$LISTEN_FDS` (sd_listen_fds' `unset_environment`). This crate
//! cannot unset `$LISTEN_FDNAMES` (removing a variable is `unsafe` in Rust 2024 and the crate
//! forbids `unsafe`); the binary does, right after.

use std::collections::BTreeMap;
use std::fmt;

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: i32 = 3;

/// A listener a service can take from systemd, by its `$LISTEN_FDNAMES` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// The name (`FileDescriptorName=` in the `.socket` unit).
    pub name: &'static str,
    /// Whether several descriptors may carry the name.
    pub many: bool,
}

impl Role {
    /// A role served by one descriptor.
    pub const fn one(name: &'static str) -> Role {
        Role { name, many: false }
    }

    /// A role served by any number of descriptors.
    pub const fn many(name: &'static str) -> Role {
        Role { name, many: true }
    }
}

/// The three variables as the process found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationEnv {
    /// `$LISTEN_PID`.
    pub pid: Option<String>,
    /// `$LISTEN_FDS`.
    pub fds: Option<String>,
    /// `$LISTEN_FDNAMES`.
    pub names: Option<String>,
}

impl ActivationEnv {
    /// Reads the variables of this process (invalid Unicode reads as a malformed value).
    pub fn read() -> Self {
        let var = |name: &str| {
            std::env::var_os(name).map(|v| {
                v.to_str()
                    .map_or_else(|| "\u{fffd}".to_owned(), str::to_owned)
            })
        };
        ActivationEnv {
            pid: var("LISTEN_PID"),
            fds: var("LISTEN_FDS"),
            names: var("LISTEN_FDNAMES"),
        }
    }
}

/// Why the passed descriptors cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    /// `$LISTEN_FDS` is not a number.
    #[error(
        "LISTEN_FDS={0:?} is not a number of descriptors; start the service from its .socket unit or unset LISTEN_FDS"
    )]
    BadCount(String),
    /// `$LISTEN_FDNAMES` names more or fewer descriptors than `$LISTEN_FDS` counts.
    #[error(
        "LISTEN_FDNAMES names {names} descriptor(s) but LISTEN_FDS is {fds}; systemd sets both, do not set them by hand"
    )]
    NameCount {
        /// How many names.
        names: usize,
        /// `$LISTEN_FDS`.
        fds: usize,
    },
    /// Two descriptors carry the same role name.
    #[error(
        "two descriptors are named {0:?} (LISTEN_FDNAMES); give each socket of the .socket unit its own FileDescriptorName="
    )]
    DuplicateName(String),
    /// A descriptor is no listening stream socket (or cannot be taken).
    #[error(
        "descriptor {fd} ({role}) passed by systemd is not a listening TCP or UNIX stream socket: {message}; use ListenStream= in the .socket unit"
    )]
    NotAListener {
        /// The descriptor number.
        fd: i32,
        /// The role it was to serve.
        role: String,
        /// Why it was refused.
        message: String,
    },
}

/// What the variables say (see [`plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No `$LISTEN_FDS` (or `0`): nothing was passed.
    None,
    /// `$LISTEN_PID` is absent or not this process: the variables were inherited from a
    /// parent and are ignored.
    NotForUs {
        /// `$LISTEN_PID` as found.
        listen_pid: Option<String>,
    },
    /// Descriptors to take.
    Take {
        /// Role → descriptor numbers, in order.
        roles: BTreeMap<String, Vec<i32>>,
        /// Descriptors passed but serving no role, with their names (`None` without names).
        unused: Vec<(i32, Option<String>)>,
    },
}

/// Decides from `env` which descriptor serves which of `roles` in process `our_pid`
/// (see the module documentation). Pure: reads nothing, takes nothing.
pub fn plan(env: &ActivationEnv, our_pid: u32, roles: &[Role]) -> Result<Plan, ActivationError> {
    let Some(fds) = env.fds.as_deref() else {
        return Ok(Plan::None);
    };
    if env
        .pid
        .as_deref()
        .map(str::trim)
        .and_then(|p| p.parse::<u32>().ok())
        != Some(our_pid)
    {
        return Ok(Plan::NotForUs {
            listen_pid: env.pid.clone(),
        });
    }
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(fds.to_owned()))?;
    // Descriptors are `int`s: a count past that is no count systemd sets.
    let count_fd = i32::try_from(count).map_err(|_| ActivationError::BadCount(fds.to_owned()))?;
    if count == 0 {
        return Ok(Plan::None);
    }
    let fd_numbers = FIRST_FD..FIRST_FD.saturating_add(count_fd);
    let names: Option<Vec<&str>> = env.names.as_deref().map(|n| n.split(':').collect());
    if let Some(names) = &names
        && names.len() != count
    {
        return Err(ActivationError::NameCount {
            names: names.len(),
            fds: count,
        });
    }
    let role_named = |name: &str| roles.iter().find(|r| r.name == name);
    let by_name = names
        .as_ref()
        .is_some_and(|names| names.iter().any(|n| role_named(n).is_some()));
    let mut assigned: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut unused = Vec::new();
    for (i, fd) in fd_numbers.enumerate() {
        let name = names.as_ref().map(|n| n[i]);
        let role = if by_name {
            name.and_then(role_named)
        } else {
            roles.get(i)
        };
        match role {
            Some(role) => {
                let fds = assigned.entry(role.name.to_owned()).or_default();
                if !fds.is_empty() && !role.many {
                    return Err(ActivationError::DuplicateName(role.name.to_owned()));
                }
                fds.push(fd);
            }
            None => unused.push((fd, name.map(str::to_owned))),
        }
    }
    Ok(Plan::Take {
        roles: assigned,
        unused,
    })
}

/// A listener passed by systemd, blocking-mode cleared, ready for `tokio`'s `from_std`.
#[derive(Debug)]
pub enum InheritedListener {
    /// A TCP listening socket.
    Tcp(std::net::TcpListener),
    /// A UNIX stream listening socket.
    Unix(std::os::unix::net::UnixListener),
}

impl fmt::Display for InheritedListener {
    /// `127.0.0.1:8461` or `unix:/run/mta-sts/socketmap.sock` (as `listen =` spells them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InheritedListener::Tcp(l) => match l.local_addr() {
                Ok(addr) => write!(f, "{addr}"),
                Err(_) => f.write_str("tcp:?"),
            },
            InheritedListener::Unix(l) => {
                match l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| p.to_owned()))
                {
                    Some(path) => write!(f, "unix:{}", path.display()),
                    None => f.write_str("unix:(unnamed)"),
                }
            }
        }
    }
}

/// The listeners passed to this process, by role.
#[derive(Debug, Default)]
pub struct Inherited {
    listeners: BTreeMap<String, Vec<(i32, InheritedListener)>>,
    /// What [`plan`] said, for the log.
    plan: Option<Plan>,
}

impl Inherited {
    /// Nothing inherited: every listener is bound from the configuration.
    pub fn none() -> Self {
        Inherited::default()
    }

    /// Reads the variables, plans for `roles` and takes the descriptors (see the module
    /// documentation). Call it before any thread starts. Descriptors passed for no role are
    /// closed when they are sockets.
    pub fn from_env(roles: &[Role]) -> Result<Self, ActivationError> {
        let env = ActivationEnv::read();
        // Reads the variables again and unsets LISTEN_PID and LISTEN_FDS, whatever they say.
        let mut fds = listenfd::ListenFd::from_env();
        let plan = plan(&env, std::process::id(), roles)?;
        let mut listeners: BTreeMap<String, Vec<_>> = BTreeMap::new();
        if let Plan::Take { roles, unused } = &plan {
            for (role, role_fds) in roles {
                for fd in role_fds {
                    let listener =
                        take(&mut fds, *fd).map_err(|message| ActivationError::NotAListener {
                            fd: *fd,
                            role: role.clone(),
                            message,
                        })?;
                    listeners
                        .entry(role.clone())
                        .or_default()
                        .push((*fd, listener));
                }
            }
            for (fd, _) in unused {
                // Dropped: closed. A descriptor of another kind is left as it is.
                let _ = take(&mut fds, *fd);
            }
        }
        Ok(Inherited {
            listeners,
            plan: Some(plan),
        })
    }

    /// Takes the (first) listener passed for `role` with its descriptor number, if any.
    pub fn take(&mut self, role: &str) -> Option<(i32, InheritedListener)> {
        let mut all = self.take_all(role);
        (!all.is_empty()).then(|| all.remove(0))
    }

    /// Takes every listener passed for `role` (a [`Role::many`]), in descriptor order.
    pub fn take_all(&mut self, role: &str) -> Vec<(i32, InheritedListener)> {
        self.listeners.remove(role).unwrap_or_default()
    }

    /// What the variables said (`None` for [`Inherited::none`]).
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }
}

/// Takes descriptor `fd` as a UNIX or TCP listener, in non-blocking mode.
fn take(fds: &mut listenfd::ListenFd, fd: i32) -> Result<InheritedListener, String> {
    let index = usize::try_from(fd - FIRST_FD).map_err(|e| e.to_string())?;
    let listener = match fds.take_unix_listener(index) {
        Ok(Some(l)) => InheritedListener::Unix(l),
        Ok(None) => return Err("not passed (LISTEN_FDS_FIRST_FD set?)".to_owned()),
        Err(unix) => match fds.take_tcp_listener(index) {
            Ok(Some(l)) => InheritedListener::Tcp(l),
            Ok(None) => return Err("not passed".to_owned()),
            Err(tcp) => return Err(format!("{unix}; {tcp}")),
        },
    };
    match &listener {
        InheritedListener::Tcp(l) => l.set_nonblocking(true),
        InheritedListener::Unix(l) => l.set_nonblocking(true),
    }
    .map_err(|e| format!("cannot make it non-blocking: {e}"))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: &[Role] = &[Role::one("socketmap"), Role::one("http")];
    const SERVE: &[Role] = &[Role::many("https"), Role::one("http")];

    fn env(pid: Option<&str>, fds: Option<&str>, names: Option<&str>) -> ActivationEnv {
        ActivationEnv {
            pid: pid.map(str::to_owned),
            fds: fds.map(str::to_owned),
            names: names.map(str::to_owned),
        }
    }

    fn roles(pairs: &[(&str, i32)]) -> BTreeMap<String, Vec<i32>> {
        let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (r, fd) in pairs {
            out.entry((*r).to_owned()).or_default().push(*fd);
        }
        out
    }

    #[test]
    fn nothing_passed() {
        assert_eq!(plan(&env(None, None, None), 42, DAEMON), Ok(Plan::None));
        assert_eq!(
            plan(&env(Some("42"), None, None), 42, DAEMON),
            Ok(Plan::None)
        );
        assert_eq!(
            plan(&env(Some("42"), Some("0"), None), 42, DAEMON),
            Ok(Plan::None)
        );
    }

    #[test]
    fn another_pid_or_none_is_ignored() {
        for pid in [Some("41"), None, Some(""), Some("x")] {
            assert_eq!(
                plan(&env(pid, Some("2"), None), 42, DAEMON),
                Ok(Plan::NotForUs {
                    listen_pid: pid.map(str::to_owned)
                }),
                "{pid:?}"
            );
        }
    }

    #[test]
    fn positional_without_names() {
        assert_eq!(
            plan(&env(Some("42"), Some("2"), None), 42, DAEMON),
            Ok(Plan::Take {
                roles: roles(&[("socketmap", 3), ("http", 4)]),
                unused: vec![]
            })
        );
        assert_eq!(
            plan(&env(Some("42"), Some("1"), None), 42, DAEMON),
            Ok(Plan::Take {
                roles: roles(&[("socketmap", 3)]),
                unused: vec![]
            })
        );
        assert_eq!(
            plan(&env(Some("42"), Some("3"), None), 42, DAEMON),
            Ok(Plan::Take {
                roles: roles(&[("socketmap", 3), ("http", 4)]),
                unused: vec![(5, None)]
            })
        );
    }

    #[test]
    fn default_unit_names_are_positional() {
        // Without FileDescriptorName=, systemd names each descriptor after its unit.
        assert_eq!(
            plan(
                &env(Some("42"), Some("2"), Some("mta-sts.socket:mta-sts.socket")),
                42,
                DAEMON
            ),
            Ok(Plan::Take {
                roles: roles(&[("socketmap", 3), ("http", 4)]),
                unused: vec![]
            })
        );
    }

    #[test]
    fn by_name_in_any_order() {
        assert_eq!(
            plan(
                &env(Some("42"), Some("2"), Some("http:socketmap")),
                42,
                DAEMON
            ),
            Ok(Plan::Take {
                roles: roles(&[("socketmap", 4), ("http", 3)]),
                unused: vec![]
            })
        );
        // Only the HTTP API passed: the socketmap is bound from the configuration.
        assert_eq!(
            plan(
                &env(Some("42"), Some("2"), Some("metrics:http")),
                42,
                DAEMON
            ),
            Ok(Plan::Take {
                roles: roles(&[("http", 4)]),
                unused: vec![(3, Some("metrics".to_owned()))]
            })
        );
        // The policy host's roles.
        assert_eq!(
            plan(&env(Some("7"), Some("2"), Some("https:http")), 7, SERVE),
            Ok(Plan::Take {
                roles: roles(&[("https", 3), ("http", 4)]),
                unused: vec![]
            })
        );
        // Several HTTPS listeners (IPv4 and IPv6) share their name; the daemon's roles
        // take one each.
        assert_eq!(
            plan(
                &env(Some("7"), Some("3"), Some("https:http:https")),
                7,
                SERVE
            ),
            Ok(Plan::Take {
                roles: roles(&[("https", 3), ("https", 5), ("http", 4)]),
                unused: vec![]
            })
        );
    }

    #[test]
    fn malformed_variables() {
        assert_eq!(
            plan(&env(Some("42"), Some("two"), None), 42, DAEMON),
            Err(ActivationError::BadCount("two".to_owned()))
        );
        assert_eq!(
            plan(&env(Some("42"), Some("-1"), None), 42, DAEMON),
            Err(ActivationError::BadCount("-1".to_owned()))
        );
        assert_eq!(
            plan(&env(Some("42"), Some("99999999999"), None), 42, DAEMON),
            Err(ActivationError::BadCount("99999999999".to_owned()))
        );
        assert_eq!(
            plan(&env(Some("42"), Some("2"), Some("socketmap")), 42, DAEMON),
            Err(ActivationError::NameCount { names: 1, fds: 2 })
        );
        assert_eq!(
            plan(&env(Some("42"), Some("2"), Some("http:http")), 42, DAEMON),
            Err(ActivationError::DuplicateName("http".to_owned()))
        );
    }
}
