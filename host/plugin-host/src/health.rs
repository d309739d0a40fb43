//! A binding's fault health: a sliding fault window per (server, tool), the quarantine of
//! a tool that keeps faulting, the escalation to the whole binding, and the last faults
//! for the admin view.
//!
//! Why per tool: a plugin whose decision panics only for `get_tasks` must not stop the
//! caching of every other tool of the server. A quarantined tool answers the fail-closed
//! default for that tool alone (do not cache, invalidate the server), so nothing the
//! plugin meant to keep private is cached by the built-in policy behind it. Two things
//! quarantine the whole binding: faults that cannot be tied to a tool (an instance that
//! cannot be made) reaching the threshold, and [`MAX_QUARANTINED_TOOLS`] quarantined
//! tools, where the plugin is broken everywhere and its deadline faults burn CPU.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use super::error::{Fault, FaultKind};

/// The (server, tool) keys whose fault windows a binding tracks; past this the key whose
/// last fault is oldest loses its window (a quarantined key is kept apart and never lost).
pub const MAX_TRACKED_TOOLS: usize = 64;
/// Quarantined tools that quarantine the whole binding.
pub const MAX_QUARANTINED_TOOLS: usize = 8;
/// The fault records a binding keeps (the newest).
pub const RECENT_FAULTS: usize = 16;
/// The canonical arguments a fault record keeps, in bytes. They are shown in the admin
/// view only (behind the admin credential), never logged: they may hold a client's data.
pub const MAX_RECORDED_ARGUMENTS: usize = 512;

/// One fault, as the admin view shows it: the panic and the summary before the backtrace.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FaultRecord {
    pub at: String,
    /// `decide`, `ttl`, `invalidations` (or `init` for an instance that could not be made).
    pub interface: &'static str,
    pub server: String,
    pub tool: String,
    pub kind: &'static str,
    pub panic: Option<String>,
    pub summary: String,
    /// The call's canonical arguments, at most [`MAX_RECORDED_ARGUMENTS`] bytes.
    pub arguments: Option<String>,
    /// The digest of the whole arguments the fault's log line carries (the log never
    /// carries the arguments themselves).
    pub args_sha256: Option<String>,
    /// Kept for the newest record only: a backtrace is up to 4 KiB.
    pub backtrace: Option<String>,
}

/// A quarantine: what it covers, since when, why, and the fault that tipped it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Quarantine {
    /// The tool's server and name; both empty for the whole binding.
    pub server: String,
    pub tool: String,
    pub since: String,
    /// One line naming the tool and the triggering fault, the panic message first.
    pub reason: String,
    pub trigger: FaultRecord,
}

/// The question a fault happened in, and whether it counts against the asked tool.
pub struct FaultSite<'a> {
    pub interface: &'static str,
    /// The server and tool the call asked about (recorded in any case).
    pub server: &'a str,
    pub tool: &'a str,
    /// Whether the fault counts against that tool; if not (an instance that could not be
    /// made faults whatever it is asked), it counts against the binding.
    pub tied: bool,
    /// The call's canonical arguments, for the record.
    pub arguments: Option<&'a str>,
}

/// What recording a fault changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tipped {
    Nothing,
    /// The fault quarantined its tool.
    Tool(Quarantine),
    /// The fault quarantined the whole binding.
    Binding(Quarantine),
}

#[derive(Default)]
struct ToolWindow {
    faults: VecDeque<Instant>,
}

#[derive(Default)]
struct Inner {
    /// Fault windows of the keys not quarantined.
    windows: HashMap<(String, String), ToolWindow>,
    /// Faults that cannot be tied to a tool.
    untied: VecDeque<Instant>,
    /// Quarantined tools: at most [`MAX_QUARANTINED_TOOLS`], so a linear scan.
    tools: Vec<Quarantine>,
    binding: Option<Quarantine>,
    /// Newest last.
    recent: VecDeque<FaultRecord>,
}

/// One binding's fault health. The hot path reads two atomics while nothing is
/// quarantined, and takes the lock only when some tool is.
pub struct BindingHealth {
    after: u32,
    window: Duration,
    quarantined: AtomicBool,
    tools_quarantined: AtomicU32,
    inner: Mutex<Inner>,
    counts: [AtomicU64; FaultKind::ALL.len()],
}

impl BindingHealth {
    pub fn new(after: u32, window: Duration) -> BindingHealth {
        BindingHealth {
            after: after.max(1),
            window,
            quarantined: AtomicBool::new(false),
            tools_quarantined: AtomicU32::new(0),
            inner: Mutex::new(Inner::default()),
            counts: Default::default(),
        }
    }

    /// Takes over a tool quarantine the late smoke gave the binding this one replaces (same
    /// file, same content: a config edit or new limits), so the replacement does not fail
    /// its start on a tool already known to fault. Past [`MAX_QUARANTINED_TOOLS`] it does
    /// nothing: the predecessor would have been quarantined whole.
    pub fn carry(&self, quarantine: Quarantine) {
        let mut inner = self.inner.lock();
        if inner.tools.len() + 1 >= MAX_QUARANTINED_TOOLS
            || inner
                .tools
                .iter()
                .any(|q| q.server == quarantine.server && q.tool == quarantine.tool)
        {
            return;
        }
        inner.tools.push(quarantine);
        self.tools_quarantined
            .store(inner.tools.len() as u32, Ordering::Relaxed);
    }

    /// Whether anything is quarantined (the binding or a tool): when not, no question needs
    /// its key looked up.
    pub fn quarantine_possible(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
            || self.tools_quarantined.load(Ordering::Relaxed) > 0
    }

    /// Whether a question about `tool` on `server` gets the safe default without asking
    /// the plugin.
    pub fn is_quarantined(&self, server: &str, tool: &str) -> bool {
        if self.quarantined.load(Ordering::Relaxed) {
            return true;
        }
        if self.tools_quarantined.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.inner
            .lock()
            .tools
            .iter()
            .any(|q| q.server == server && q.tool == tool)
    }

    /// Whether the whole binding is quarantined.
    pub fn binding_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// How many tools are quarantined on their own.
    pub fn quarantined_tool_count(&self) -> u32 {
        self.tools_quarantined.load(Ordering::Relaxed)
    }

    /// The binding-wide quarantine, if any.
    pub fn binding_quarantine(&self) -> Option<Quarantine> {
        self.inner.lock().binding.clone()
    }

    /// The quarantined tools, in the order they were quarantined.
    pub fn quarantined_tools(&self) -> Vec<Quarantine> {
        self.inner.lock().tools.clone()
    }

    /// The reason of the binding's quarantine, else of its first quarantined tool: what
    /// stops a shadow row, and the plugin's one-line reason in the admin view.
    pub fn any_quarantine_reason(&self) -> Option<String> {
        let inner = self.inner.lock();
        inner
            .binding
            .as_ref()
            .or(inner.tools.first())
            .map(|q| q.reason.clone())
    }

    /// The newest fault records first, at most `limit`.
    pub fn recent_faults(&self, limit: usize) -> Vec<FaultRecord> {
        self.inner
            .lock()
            .recent
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn count(&self, kind: FaultKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Records a fault and says whether it quarantined its tool or the binding.
    pub fn record(&self, site: &FaultSite<'_>, fault: &Fault) -> Tipped {
        self.record_as(site, fault, false)
    }

    /// Records a fault the smoke call over a server's tool catalogue found while the
    /// binding serves, and quarantines its tool at once, whatever `quarantine_after`
    /// says: the plugin failed the question the host asks every binding before trusting
    /// it with the tool (`{}` arguments), so live calls would fail it too. It escalates
    /// to the binding as [`BindingHealth::record`] does.
    pub fn record_smoke_fault(&self, site: &FaultSite<'_>, fault: &Fault) -> Tipped {
        self.record_as(site, fault, true)
    }

    fn record_as(&self, site: &FaultSite<'_>, fault: &Fault, smoke: bool) -> Tipped {
        self.counts[fault.kind as usize].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (server, tool) = (site.server, site.tool);
        let record = FaultRecord {
            at: now_rfc3339(),
            interface: site.interface,
            server: capped_name(server).into_owned(),
            tool: capped_name(tool).into_owned(),
            kind: fault.kind.as_str(),
            panic: fault.panic.clone(),
            summary: fault.summary.clone(),
            arguments: site.arguments.map(cap_arguments),
            args_sha256: site.arguments.map(super::wasm_policy::arguments_digest),
            backtrace: fault.backtrace.clone(),
        };
        let mut inner = self.inner.lock();
        // Only the newest record keeps its backtrace.
        if let Some(previous) = inner.recent.back_mut() {
            previous.backtrace = None;
        }
        if inner.recent.len() >= RECENT_FAULTS {
            inner.recent.pop_front();
        }
        inner.recent.push_back(record.clone());
        if self.binding_quarantined() {
            return Tipped::Nothing;
        }
        let key = (server, tool);
        if !site.tied {
            let faults = slide(&mut inner.untied, now, self.window);
            if faults < self.after as usize {
                return Tipped::Nothing;
            }
            let reason = format!(
                "{faults} faults within {:?} not tied to a tool; the last: {fault}",
                self.window
            );
            return self.quarantine_binding(&mut inner, reason, record);
        }
        if inner
            .tools
            .iter()
            .any(|q| q.server == key.0 && q.tool == key.1)
        {
            return Tipped::Nothing;
        }
        let owned = (key.0.to_owned(), key.1.to_owned());
        if !inner.windows.contains_key(&owned) && inner.windows.len() >= MAX_TRACKED_TOOLS {
            forget_oldest(&mut inner.windows);
        }
        let reason = if smoke {
            inner.windows.remove(&owned);
            format!(
                "{SMOKE_QUARANTINE} for {}/{} ({} with arguments {{}}): {fault}",
                key.0, key.1, site.interface
            )
        } else {
            let window = inner.windows.entry(owned.clone()).or_default();
            let faults = slide(&mut window.faults, now, self.window);
            if faults < self.after as usize {
                return Tipped::Nothing;
            }
            inner.windows.remove(&owned);
            format!(
                "{faults} faults within {:?} for {}/{}; the last: {fault}",
                self.window, key.0, key.1
            )
        };
        let quarantine = Quarantine {
            server: owned.0,
            tool: owned.1,
            since: now_rfc3339(),
            reason,
            trigger: record.clone(),
        };
        inner.tools.push(quarantine.clone());
        self.tools_quarantined
            .store(inner.tools.len() as u32, Ordering::Relaxed);
        if inner.tools.len() >= MAX_QUARANTINED_TOOLS {
            let names: Vec<String> = inner
                .tools
                .iter()
                .map(|q| format!("{}/{}", q.server, q.tool))
                .collect();
            let reason = format!(
                "{} tools quarantined ({}); the last: {}",
                names.len(),
                names.join(", "),
                quarantine.reason
            );
            return self.quarantine_binding(&mut inner, reason, record);
        }
        Tipped::Tool(quarantine)
    }

    fn quarantine_binding(
        &self,
        inner: &mut Inner,
        reason: String,
        trigger: FaultRecord,
    ) -> Tipped {
        let quarantine = Quarantine {
            server: String::new(),
            tool: String::new(),
            since: now_rfc3339(),
            reason,
            trigger,
        };
        inner.binding = Some(quarantine.clone());
        self.quarantined.store(true, Ordering::Relaxed);
        Tipped::Binding(quarantine)
    }

    /// Lifts quarantines: the binding's and every tool's with no `server`; one server's
    /// tools with a `server`; one tool with both. Returns what was lifted, as
    /// `server/tool` (or `*` for the binding). The lifted keys start with empty windows.
    pub fn lift(&self, server: Option<&str>, tool: Option<&str>) -> Vec<String> {
        let mut inner = self.inner.lock();
        let mut lifted = Vec::new();
        if server.is_none() && tool.is_none() && inner.binding.take().is_some() {
            inner.untied.clear();
            lifted.push("*".to_owned());
        }
        inner.tools.retain(|q| {
            let matches = server.is_none_or(|s| s == q.server) && tool.is_none_or(|t| t == q.tool);
            if matches {
                lifted.push(format!("{}/{}", q.server, q.tool));
            }
            !matches
        });
        self.tools_quarantined
            .store(inner.tools.len() as u32, Ordering::Relaxed);
        self.quarantined
            .store(inner.binding.is_some(), Ordering::Relaxed);
        lifted
    }
}

/// Adds `now` to a fault window, drops what fell out of it, and returns its length.
fn slide(faults: &mut VecDeque<Instant>, now: Instant, window: Duration) -> usize {
    faults.push_back(now);
    while faults
        .front()
        .is_some_and(|at| now.duration_since(*at) > window)
    {
        faults.pop_front();
    }
    faults.len()
}

/// Drops the window whose last fault is oldest: the key least likely to be faulting now.
fn forget_oldest(windows: &mut HashMap<(String, String), ToolWindow>) {
    let oldest = windows
        .iter()
        .min_by_key(|(_, window)| window.faults.back().copied())
        .map(|(key, _)| key.clone());
    if let Some(key) = oldest {
        windows.remove(&key);
    }
}

/// The arguments as recorded: cut at a character boundary past the cap, marked as cut.
/// How the reason of a quarantine the smoke call over a catalogue gave starts: such a tool
/// is carried over to the binding's replacement (see [`BindingHealth::carry`]).
pub const SMOKE_QUARANTINE: &str = "failed the smoke call on the server's tool catalogue";

/// A server or tool name in a fault record or a fault's log line is cut here: a tool name
/// comes from the client and may be as long as the request body.
pub const MAX_RECORDED_NAME: usize = 128;

/// `name`, cut to at most [`MAX_RECORDED_NAME`] bytes on a character boundary.
pub fn capped_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.len() <= MAX_RECORDED_NAME {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut cut = MAX_RECORDED_NAME;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &name[..cut]))
}

fn cap_arguments(arguments: &str) -> String {
    if arguments.len() <= MAX_RECORDED_ARGUMENTS {
        return arguments.to_owned();
    }
    let mut cut = MAX_RECORDED_ARGUMENTS;
    while !arguments.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… (cut)", &arguments[..cut])
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trap(message: &str) -> Fault {
        Fault::from_parts(
            FaultKind::Trap,
            Some(format!("panicked at src/lib.rs:1:1: {message}")),
            "wasm trap: wasm `unreachable` instruction executed",
            Some("backtrace".to_owned()),
        )
    }

    fn site<'a>(tool: &'a str, arguments: Option<&'a str>) -> FaultSite<'a> {
        FaultSite {
            interface: "decide",
            server: "demo",
            tool,
            tied: true,
            arguments,
        }
    }

    #[test]
    fn a_tool_quarantine_leaves_other_tools_answering() {
        let health = BindingHealth::new(3, Duration::from_secs(60));
        assert_eq!(
            health.record(&site("get_tasks", None), &trap("boom")),
            Tipped::Nothing
        );
        assert_eq!(
            health.record(&site("get_clients", None), &trap("boom")),
            Tipped::Nothing
        );
        assert_eq!(
            health.record(&site("get_tasks", None), &trap("boom")),
            Tipped::Nothing
        );
        let Tipped::Tool(quarantine) = health.record(&site("get_tasks", Some("{}")), &trap("boom"))
        else {
            panic!("the third fault did not quarantine get_tasks");
        };
        assert_eq!(
            (quarantine.server.as_str(), quarantine.tool.as_str()),
            ("demo", "get_tasks")
        );
        assert!(
            quarantine.reason.starts_with("3 faults within"),
            "{}",
            quarantine.reason
        );
        assert!(
            quarantine.reason.contains("demo/get_tasks"),
            "{}",
            quarantine.reason
        );
        assert!(
            quarantine.reason.contains("trapped: panicked at"),
            "{}",
            quarantine.reason
        );
        assert_eq!(quarantine.trigger.arguments.as_deref(), Some("{}"));
        assert!(health.is_quarantined("demo", "get_tasks"));
        assert!(!health.is_quarantined("demo", "get_clients"));
        assert!(!health.binding_quarantined());
        assert_eq!(health.quarantined_tool_count(), 1);
        assert_eq!(health.count(FaultKind::Trap), 4);
        // Newest first; only the newest keeps its backtrace.
        let recent = health.recent_faults(8);
        assert_eq!(recent.len(), 4);
        assert!(recent[0].backtrace.is_some() && recent[1].backtrace.is_none());
        assert_eq!(recent[1].tool, "get_tasks");
        assert_eq!(recent[2].tool, "get_clients");
    }

    #[test]
    fn eight_tools_escalate_to_the_binding() {
        let health = BindingHealth::new(1, Duration::from_secs(60));
        let tools: Vec<String> = (0..MAX_QUARANTINED_TOOLS)
            .map(|n| format!("t{n}"))
            .collect();
        for tool in &tools[..MAX_QUARANTINED_TOOLS - 1] {
            assert!(matches!(
                health.record(&site(tool, None), &trap("x")),
                Tipped::Tool(_)
            ));
        }
        assert!(!health.binding_quarantined());
        let last = &tools[MAX_QUARANTINED_TOOLS - 1];
        let Tipped::Binding(quarantine) = health.record(&site(last, None), &trap("x")) else {
            panic!("the eighth tool did not quarantine the binding");
        };
        assert!(
            quarantine.reason.starts_with("8 tools quarantined"),
            "{}",
            quarantine.reason
        );
        assert!(health.binding_quarantined());
        assert!(health.is_quarantined("other", "tool"));
    }

    #[test]
    fn faults_without_a_tool_quarantine_the_binding() {
        let health = BindingHealth::new(2, Duration::from_secs(60));
        let untied = FaultSite {
            interface: "init",
            server: "demo",
            tool: "get_tasks",
            tied: false,
            arguments: None,
        };
        let fault = Fault::new(FaultKind::Instantiate, "init rejected its config: no");
        assert_eq!(health.record(&untied, &fault), Tipped::Nothing);
        assert!(matches!(health.record(&untied, &fault), Tipped::Binding(_)));
        // The record still says which call met the fault.
        assert_eq!(health.recent_faults(1)[0].tool, "get_tasks");
        assert_eq!(health.quarantined_tool_count(), 0);
        assert!(health.is_quarantined("demo", "anything"));
        assert_eq!(health.lift(None, None), vec!["*".to_owned()]);
        assert!(!health.is_quarantined("demo", "anything"));
    }

    #[test]
    fn keys_are_bounded_and_records_capped() {
        let health = BindingHealth::new(2, Duration::from_secs(60));
        let long = "x".repeat(MAX_RECORDED_ARGUMENTS * 4);
        for n in 0..(MAX_TRACKED_TOOLS * 2) {
            health.record(&site(&format!("t{n}"), Some(&long)), &trap("x"));
        }
        let inner = health.inner.lock();
        assert!(inner.windows.len() <= MAX_TRACKED_TOOLS);
        assert_eq!(inner.recent.len(), RECENT_FAULTS);
        let arguments = inner.recent[0].arguments.clone().unwrap_or_default();
        assert!(arguments.len() <= MAX_RECORDED_ARGUMENTS + 16 && arguments.ends_with("(cut)"));
        assert!(inner.tools.is_empty());
    }

    #[test]
    fn a_lifted_tool_is_asked_again() {
        let health = BindingHealth::new(1, Duration::from_secs(60));
        health.record(&site("get_tasks", None), &trap("x"));
        health.record(
            &FaultSite {
                interface: "ttl",
                server: "other",
                tool: "get_tasks",
                tied: true,
                arguments: None,
            },
            &trap("x"),
        );
        assert_eq!(
            health.lift(Some("demo"), Some("get_tasks")),
            vec!["demo/get_tasks".to_owned()]
        );
        assert!(!health.is_quarantined("demo", "get_tasks"));
        assert!(health.is_quarantined("other", "get_tasks"));
        assert_eq!(health.quarantined_tool_count(), 1);
        assert!(health.lift(Some("demo"), None).is_empty());
    }

    #[test]
    fn a_smoke_fault_quarantines_its_tool_at_once_and_escalates_as_live_faults_do() {
        let health = BindingHealth::new(3, Duration::from_secs(60));
        let tipped = health.record_smoke_fault(&site("get_tasks", Some("{}")), &trap("boom"));
        let Tipped::Tool(quarantine) = tipped else {
            panic!("one smoke fault quarantines its tool: {tipped:?}");
        };
        assert!(
            quarantine
                .reason
                .starts_with("failed the smoke call on the server's tool catalogue for demo/get_tasks (decide with arguments {}): trapped: panicked at "),
            "{}",
            quarantine.reason
        );
        assert!(health.is_quarantined("demo", "get_tasks"));
        assert!(!health.is_quarantined("demo", "get_clients"));
        for index in 1..MAX_QUARANTINED_TOOLS {
            let tool = format!("tool_{index}");
            let tipped = health.record_smoke_fault(&site(&tool, Some("{}")), &trap("boom"));
            let escalated = index + 1 == MAX_QUARANTINED_TOOLS;
            assert_eq!(
                matches!(tipped, Tipped::Binding(_)),
                escalated,
                "{tipped:?}"
            );
        }
        assert!(health.binding_quarantined());
    }
}
