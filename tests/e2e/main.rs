//! End-to-end tests of the local stack and the functions it mounts.

mod appointments;
mod architecture;
mod audit_events;
mod auth_races;
mod aws_phi;
mod browser;
mod documents;
mod emergency;
mod events;
mod gateway;
mod health;
mod iam;
mod identity;
mod ids;
mod medications;
mod messaging;
mod openapi;
mod payments;
mod persistence;
mod readme;
mod realtime_tickets;
mod reminders;
mod template;
mod video;
mod websocket;
mod workers;
