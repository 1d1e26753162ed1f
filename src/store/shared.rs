//! The store for async code: every SQLite call runs on tokio's blocking pool, never on an async worker.
//!
//! Sinks and the metrics/status readers hold a [`SharedStore`]: one connection (opened with
//! [`Store::open_existing`]) behind a mutex, used one call at a time from `spawn_blocking`. The writer
//! connection belongs to the ingest thread alone.

use super::{Store, StoreError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A store connection that async code may call without blocking its worker thread.
#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Store>>);

impl SharedStore {
    /// Open an existing store (the daemon's writer created it) on the blocking pool.
    pub async fn open_existing(dir: PathBuf) -> Result<SharedStore, StoreError> {
        let s = tokio::task::spawn_blocking(move || Store::open_existing(&dir))
            .await
            .map_err(join_error)??;
        Ok(SharedStore(Arc::new(Mutex::new(s))))
    }

    /// Wrap a store opened elsewhere.
    pub fn new(store: Store) -> SharedStore {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// Run `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(join_error)?
    }

    /// Run `f` with the connection on the blocking pool without waiting for it: the caller's thread is not woken
    /// when it ends. `f` handles its own errors; for writes whose loss only repeats work (a cursor save).
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<()>
    where
        F: FnOnce(&mut Store) + Send + 'static,
    {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("store worker failed: {e}")))
}
