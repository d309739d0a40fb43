//! In-memory task-management state (clients, habits, tasks) seeded with the seed guide's demo data.
//! The part that changes (the tasks and the next id) also has a JSON form, which
//! `--state-file` keeps in a file that several demo processes share (see `state_file`).
//!
//! Everything here is deterministic: task ids are sequential integers and no wall-clock value is
//! ever stored, so the same sequence of writes always yields byte-identical reads. That property
//! is what lets the bridge's cache tests compare a cached result with a fresh one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a task is still open or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TaskStatus {
    /// The task still needs doing.
    Active,
    /// The task is finished; its points count towards today's metrics.
    Done,
}

impl TaskStatus {
    /// Parses the wire form ("active" or "done").
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "done" => Some(Self::Done),
            _ => None,
        }
    }
}

/// Which tasks `get_tasks` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFilter {
    /// Only open tasks (the default, as in the seed guide's "active" queries).
    Active,
    /// Only finished tasks.
    Done,
    /// Every task.
    All,
}

impl StatusFilter {
    /// Parses the wire form ("active", "done" or "all").
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "done" => Some(Self::Done),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    fn matches(self, status: TaskStatus) -> bool {
        match self {
            Self::Active => status == TaskStatus::Active,
            Self::Done => status == TaskStatus::Done,
            Self::All => true,
        }
    }
}

/// One task. Field order is the wire order because `serde_json` preserves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Task {
    /// Sequential id, starting at 1 for the seed tasks.
    pub id: u64,
    /// Human-readable title, never empty.
    pub title: String,
    /// Open or finished.
    pub status: TaskStatus,
    /// Effort points; completed tasks' points add up in `get_today_metrics`.
    pub points: u32,
    /// The client the task is for, if any; always one of the known client ids.
    pub client_id: Option<String>,
}

/// A client the tasks can be for. The client list is fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Client {
    /// Short stable id used by `client_id` arguments.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Industry, only there to make the payload look like real data.
    pub industry: &'static str,
}

/// A habit being tracked. The habit list is fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Habit {
    /// Short stable id.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// "daily" or "weekly".
    pub frequency: &'static str,
    /// Current streak length, in periods of `frequency`.
    pub streak: u32,
}

/// Today's totals, derived from the tasks so that every write changes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Metrics {
    /// Number of open tasks.
    pub active_tasks: usize,
    /// Number of finished tasks.
    pub completed_tasks: usize,
    /// Number of tasks of any status.
    pub total_tasks: usize,
    /// Sum of the points of finished tasks.
    pub points: u64,
}

/// The fields `update_task` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskUpdate {
    /// A new title (must not be blank).
    pub title: Option<String>,
    /// A new status.
    pub status: Option<TaskStatus>,
    /// New points.
    pub points: Option<u32>,
    /// `Some(None)` detaches the task from its client; `Some(Some(id))` moves it.
    pub client_id: Option<Option<String>>,
}

/// Why a store operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    /// No task has this id.
    #[error("no task with id {0}")]
    TaskNotFound(u64),
    /// The client id is not one of the known clients.
    #[error("no client with id {0:?} (known clients: acme, globex, initech)")]
    ClientNotFound(String),
    /// The title is empty or only whitespace.
    #[error("title must not be empty")]
    EmptyTitle,
}

/// The version of the saved state's JSON form; a file of another version is refused.
const SAVED_STATE_VERSION: u32 = 1;

/// The saved form of the state that changes: the tasks in id order and the next id. Clients
/// and habits are fixed, so they are not saved.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedState {
    version: u32,
    next_id: u64,
    tasks: Vec<Task>,
}

/// Why a saved state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SavedStateError {
    /// Not the JSON form [`Store::to_saved`] writes.
    #[error("not a saved demo state: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by another version of the demo server.
    #[error("saved state version {0}, expected {SAVED_STATE_VERSION}")]
    Version(u32),
    /// Ids that the store could never have produced (a duplicate, or one at or past the
    /// next id), so a later create would collide.
    #[error("task id {id} is duplicated or not below next_id {next_id}")]
    TaskId { id: u64, next_id: u64 },
}

/// The whole in-memory state of one demo server process.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    clients: Vec<Client>,
    habits: Vec<Habit>,
    tasks: BTreeMap<u64, Task>,
    next_id: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self::seeded()
    }
}

impl Store {
    /// The seed state: 3 clients, 4 habits and 5 tasks of mixed status.
    pub(crate) fn seeded() -> Self {
        let clients = vec![
            Client {
                id: "acme",
                name: "Acme Corporation",
                industry: "manufacturing",
            },
            Client {
                id: "globex",
                name: "Globex Corporation",
                industry: "energy",
            },
            Client {
                id: "initech",
                name: "Initech",
                industry: "software",
            },
        ];
        let habits = vec![
            Habit {
                id: "morning-review",
                name: "Morning review",
                frequency: "daily",
                streak: 12,
            },
            Habit {
                id: "inbox-zero",
                name: "Inbox zero",
                frequency: "daily",
                streak: 4,
            },
            Habit {
                id: "exercise",
                name: "Exercise",
                frequency: "daily",
                streak: 7,
            },
            Habit {
                id: "weekly-planning",
                name: "Weekly planning",
                frequency: "weekly",
                streak: 3,
            },
        ];
        let seed_tasks = [
            ("Draft Q3 proposal", TaskStatus::Active, 3, Some("acme")),
            ("Fix invoice export", TaskStatus::Done, 2, Some("globex")),
            ("Review TPS reports", TaskStatus::Active, 1, Some("initech")),
            ("Plan next sprint", TaskStatus::Active, 2, None),
            (
                "Send weekly status update",
                TaskStatus::Done,
                1,
                Some("acme"),
            ),
        ];
        let mut store = Self {
            clients,
            habits,
            tasks: BTreeMap::new(),
            next_id: 1,
        };
        for (title, status, points, client_id) in seed_tasks {
            let id = store.allocate_id();
            store.tasks.insert(
                id,
                Task {
                    id,
                    title: title.to_owned(),
                    status,
                    points,
                    client_id: client_id.map(str::to_owned),
                },
            );
        }
        store
    }

    /// The saved form of the tasks and the next id (compact JSON; the same state always
    /// gives the same bytes).
    pub(crate) fn to_saved(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&SavedState {
            version: SAVED_STATE_VERSION,
            next_id: self.next_id,
            tasks: self.tasks.values().cloned().collect(),
        })
    }

    /// A store with the fixed clients and habits and the tasks and next id of a saved state.
    pub(crate) fn from_saved(bytes: &[u8]) -> Result<Self, SavedStateError> {
        let saved: SavedState = serde_json::from_slice(bytes)?;
        if saved.version != SAVED_STATE_VERSION {
            return Err(SavedStateError::Version(saved.version));
        }
        let mut store = Self::seeded();
        store.tasks.clear();
        store.next_id = saved.next_id;
        for task in saved.tasks {
            let id = task.id;
            if id >= saved.next_id || store.tasks.insert(id, task).is_some() {
                return Err(SavedStateError::TaskId {
                    id,
                    next_id: saved.next_id,
                });
            }
        }
        Ok(store)
    }

    /// Whether the state that changes (tasks and next id) is the same in both stores.
    pub(crate) fn same_state(&self, other: &Self) -> bool {
        self.next_id == other.next_id && self.tasks == other.tasks
    }

    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Tasks matching the filter (and client, if given), sorted by id, at most `limit` of them.
    pub(crate) fn tasks(
        &self,
        filter: StatusFilter,
        client_id: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<&Task>, StoreError> {
        if let Some(client_id) = client_id {
            self.check_client(client_id)?;
        }
        // The BTreeMap is keyed by id, so iteration order is already the sorted order.
        let matching = self.tasks.values().filter(|task| {
            filter.matches(task.status)
                && client_id.is_none_or(|wanted| task.client_id.as_deref() == Some(wanted))
        });
        Ok(matching.take(limit.unwrap_or(usize::MAX)).collect())
    }

    /// One task by id.
    pub(crate) fn task(&self, id: u64) -> Result<&Task, StoreError> {
        self.tasks.get(&id).ok_or(StoreError::TaskNotFound(id))
    }

    /// All clients, in a fixed order.
    pub(crate) fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// All habits, in a fixed order.
    pub(crate) fn habits(&self) -> &[Habit] {
        &self.habits
    }

    /// Today's totals, computed from the current tasks.
    pub(crate) fn metrics(&self) -> Metrics {
        let mut metrics = Metrics {
            active_tasks: 0,
            completed_tasks: 0,
            total_tasks: self.tasks.len(),
            points: 0,
        };
        for task in self.tasks.values() {
            match task.status {
                TaskStatus::Active => metrics.active_tasks += 1,
                TaskStatus::Done => {
                    metrics.completed_tasks += 1;
                    metrics.points += u64::from(task.points);
                }
            }
        }
        metrics
    }

    /// Adds an active task and returns it.
    pub(crate) fn create_task(
        &mut self,
        title: &str,
        client_id: Option<&str>,
        points: u32,
    ) -> Result<&Task, StoreError> {
        let title = Self::clean_title(title)?;
        if let Some(client_id) = client_id {
            self.check_client(client_id)?;
        }
        let id = self.allocate_id();
        let task = Task {
            id,
            title,
            status: TaskStatus::Active,
            points,
            client_id: client_id.map(str::to_owned),
        };
        Ok(self.tasks.entry(id).or_insert(task))
    }

    /// Applies an update and returns the updated task. Every field is validated before any is
    /// applied, so a refused update leaves the task untouched.
    pub(crate) fn update_task(&mut self, id: u64, update: TaskUpdate) -> Result<&Task, StoreError> {
        if !self.tasks.contains_key(&id) {
            return Err(StoreError::TaskNotFound(id));
        }
        let title = update.title.as_deref().map(Self::clean_title).transpose()?;
        if let Some(Some(client_id)) = &update.client_id {
            self.check_client(client_id)?;
        }
        let task = self
            .tasks
            .get_mut(&id)
            .ok_or(StoreError::TaskNotFound(id))?;
        if let Some(title) = title {
            task.title = title;
        }
        if let Some(status) = update.status {
            task.status = status;
        }
        if let Some(points) = update.points {
            task.points = points;
        }
        if let Some(client_id) = update.client_id {
            task.client_id = client_id;
        }
        Ok(task)
    }

    /// Marks a task done (completing a finished task is a no-op) and returns it.
    pub(crate) fn complete_task(&mut self, id: u64) -> Result<&Task, StoreError> {
        let task = self
            .tasks
            .get_mut(&id)
            .ok_or(StoreError::TaskNotFound(id))?;
        task.status = TaskStatus::Done;
        Ok(task)
    }

    fn check_client(&self, client_id: &str) -> Result<(), StoreError> {
        if self.clients.iter().any(|client| client.id == client_id) {
            Ok(())
        } else {
            Err(StoreError::ClientNotFound(client_id.to_owned()))
        }
    }

    fn clean_title(title: &str) -> Result<String, StoreError> {
        let trimmed = title.trim();
        if trimmed.is_empty() {
            Err(StoreError::EmptyTitle)
        } else {
            Ok(trimmed.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_has_three_clients_four_habits_five_tasks() {
        let store = Store::seeded();
        assert_eq!(store.clients().len(), 3);
        assert_eq!(store.habits().len(), 4);
        let all = store.tasks(StatusFilter::All, None, None);
        assert_eq!(all.map(|tasks| tasks.len()), Ok(5));
    }

    #[test]
    fn metrics_follow_writes() {
        let mut store = Store::seeded();
        let before = store.metrics();
        assert_eq!(before.active_tasks, 3);
        assert_eq!(before.completed_tasks, 2);
        assert_eq!(before.points, 3);

        let created = store
            .create_task("Write tests", Some("globex"), 5)
            .map(|t| t.id);
        assert_eq!(created, Ok(6));
        assert_eq!(store.metrics().active_tasks, 4);

        assert!(store.complete_task(6).is_ok());
        let after = store.metrics();
        assert_eq!(after.completed_tasks, 3);
        assert_eq!(after.points, 8);
        assert_eq!(after.total_tasks, 6);
    }

    #[test]
    fn filters_by_status_and_client_in_id_order() {
        let store = Store::seeded();
        let ids = |tasks: Vec<&Task>| tasks.iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            store.tasks(StatusFilter::Active, None, None).map(ids),
            Ok(vec![1, 3, 4])
        );
        assert_eq!(
            store.tasks(StatusFilter::All, Some("acme"), None).map(ids),
            Ok(vec![1, 5])
        );
        assert_eq!(
            store.tasks(StatusFilter::All, None, Some(2)).map(ids),
            Ok(vec![1, 2])
        );
        assert_eq!(
            store.tasks(StatusFilter::All, Some("nope"), None).map(ids),
            Err(StoreError::ClientNotFound("nope".into()))
        );
    }

    #[test]
    fn refused_writes_change_nothing() {
        let mut store = Store::seeded();
        let before = store.clone();
        assert_eq!(
            store.create_task("   ", None, 1).map(|t| t.id),
            Err(StoreError::EmptyTitle)
        );
        assert_eq!(
            store.create_task("x", Some("umbrella"), 1).map(|t| t.id),
            Err(StoreError::ClientNotFound("umbrella".into()))
        );
        let update = TaskUpdate {
            title: Some("renamed".into()),
            client_id: Some(Some("umbrella".into())),
            ..TaskUpdate::default()
        };
        assert!(store.update_task(1, update).is_err());
        assert_eq!(
            store.complete_task(99).map(|t| t.id),
            Err(StoreError::TaskNotFound(99))
        );
        assert_eq!(store.tasks, before.tasks);
        assert_eq!(store.next_id, before.next_id);
    }

    #[test]
    fn a_saved_state_loads_back_to_the_same_state() {
        let mut store = Store::seeded();
        assert!(store.create_task("Saved", Some("initech"), 4).is_ok());
        assert!(store.complete_task(1).is_ok());
        let saved = store.to_saved().unwrap_or_default();
        let loaded = Store::from_saved(&saved);
        assert!(
            loaded
                .as_ref()
                .is_ok_and(|loaded| loaded.same_state(&store))
        );
        assert_eq!(loaded.ok().and_then(|l| l.to_saved().ok()), Some(saved));
        assert!(!Store::seeded().same_state(&store));
    }

    #[test]
    fn a_saved_state_that_could_not_have_been_written_is_refused() {
        let cases = [
            (r#"{"version":2,"next_id":1,"tasks":[]}"#, "version 2"),
            (
                r#"{"version":1,"next_id":1,"tasks":[{"id":1,"title":"x","status":"active","points":1,"client_id":null}]}"#,
                "not below next_id",
            ),
            (
                r#"{"version":1,"next_id":9,"tasks":[],"extra":true}"#,
                "unknown field",
            ),
            ("{", "EOF"),
        ];
        for (text, expected) in cases {
            let error = Store::from_saved(text.as_bytes())
                .err()
                .map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|error| error.contains(expected)),
                "{text}: {error:?}"
            );
        }
    }

    #[test]
    fn update_can_detach_a_client() {
        let mut store = Store::seeded();
        let update = TaskUpdate {
            client_id: Some(None),
            status: Some(TaskStatus::Done),
            ..TaskUpdate::default()
        };
        let task = store.update_task(1, update).cloned();
        assert_eq!(task.as_ref().map(|t| t.client_id.clone()), Ok(None));
        assert_eq!(task.map(|t| t.status), Ok(TaskStatus::Done));
    }
}
