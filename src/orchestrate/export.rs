//! `dsm schedule export`: crontab lines, systemd units and Kubernetes CronJobs.
