//! Programming the kernel: [`Syncer`] keeps the ruleset it last applied and turns each new
//! model into the smallest transaction that reaches it: a full one the first time and
//! after any failure (the kernel's state is then unknown), a partial one otherwise.

use std::time::{Duration, Instant};

use tracing::debug;

use crate::model::Model;
use crate::nft::{Nft, NftError};
use crate::ruleset::{RenderOptions, Ruleset};
use crate::transaction;

/// What one sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// The table was recreated.
    Full,
    /// Only the changes were written.
    Partial,
    /// Nothing had changed; nft was not run.
    Unchanged,
}

pub struct Syncer {
    nft: Nft,
    options: RenderOptions,
    /// What the kernel holds, if known.
    programmed: Option<Ruleset>,
}

impl Syncer {
    pub fn new(nft: Nft, options: RenderOptions) -> Self {
        Syncer { nft, options, programmed: None }
    }

    /// Makes the next sync a full one.
    pub fn invalidate(&mut self) {
        self.programmed = None;
    }

    /// Programs `model`.
    pub async fn sync(&mut self, model: &Model) -> Result<SyncKind, NftError> {
        let started = Instant::now();
        let wanted = Ruleset::render(model, &self.options);
        let (kind, script) = match self.programmed.take() {
            None => (SyncKind::Full, transaction::full(&wanted)),
            Some(old) => {
                let script = transaction::partial(&old, &wanted);
                if script.is_empty() {
                    self.programmed = Some(old);
                    return Ok(SyncKind::Unchanged);
                }
                (SyncKind::Partial, script)
            }
        };
        // On failure `programmed` stays None: the next sync is full.
        self.nft.apply(&script).await?;
        self.programmed = Some(wanted);
        debug!(?kind, ports = model.ports.len(), bytes = script.len(), took = ?started.elapsed(), "proxy rules synced");
        Ok(kind)
    }

    /// How long to wait after a failed sync before the full retry.
    pub const RETRY: Duration = Duration::from_secs(1);
}
