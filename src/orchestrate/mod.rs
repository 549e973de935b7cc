//! Flows, jobs, schedules, dependencies between flows, retries: what `dsm sync` runs.
