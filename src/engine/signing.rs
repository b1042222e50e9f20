//! Signed state: this node signs the entries it writes and its head, and
//! checks the entries and heads of others against their published
//! identities before any of it is applied (see `docs/SECURITY.md`,
//! "Signed state").
//!
//! The owner signs each entry (cluster, name, generation, key, value,
//! version, tombstone) and its head (cluster, name, generation, highest
//! version). A delta is accepted only if its head verifies and bounds its
//! range (`to_version <= head_version`), and its entries are applied up to
//! the first one that does not verify: a relay can pass signed state on,
//! but not invent, alter, re-version or extend it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::Engine;
use super::membership::Claim;
use super::node_id::NodeId;
use super::state::signature_of;
use crate::config::{ConfigError, Signatures};
use crate::identity::{
    IDENTITY_KEY, Identity, PublicKey, Trust, entry_message, head_message, member_message,
};
use crate::wire::proto::{self, MemberState};

/// Most member names remembered as logged for a refused identity.
const MAX_LOGGED: usize = 1_024;

/// What this node knows for checking signatures.
#[derive(Default)]
pub(super) struct Signing {
    /// Our own identity, once set.
    identity: Option<Arc<Identity>>,
    /// Who vouches for the identities members publish.
    trust: Option<Arc<dyn Trust>>,
    /// Members' verified keys, by member key (name and generation), with
    /// the last head verified (its version and signature), so that the
    /// same head is checked once.
    keys: HashMap<u64, Verified>,
    /// Member names whose identity was refused, so each is logged once.
    refused: HashSet<String>,
}

struct Verified {
    key: PublicKey,
    head: Option<(u64, Bytes)>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("identity", &self.identity)
            .field("trust", &self.trust)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Signing {
    /// Forgets the keys of members no longer in the table.
    pub(super) fn retain(&mut self, known: impl Fn(u64) -> bool) {
        self.keys.retain(|k, _| known(*k));
    }
}

impl Engine {
    /// Gives this node its identity and the trust it checks others' with.
    /// Publishes the identity under [`IDENTITY_KEY`] (call it first, before
    /// any other write, so the identity is the node's first version and
    /// every delta from the start carries it). An error naming
    /// `signatures` if the config does not sign.
    pub fn set_identity(
        &mut self,
        now: Instant,
        identity: Arc<Identity>,
        trust: Arc<dyn Trust>,
    ) -> Result<(), ConfigError> {
        if !self.config.signatures.signs() {
            return Err(ConfigError {
                field: "signatures",
                reason: "an identity needs signatures = sign or require".into(),
            });
        }
        let published = identity.published();
        self.signing.identity = Some(identity);
        self.signing.trust = Some(trust);
        self.set_reserved(now, IDENTITY_KEY, published)
            .map_err(|e| ConfigError {
                field: "identity",
                reason: format!("the identity does not fit a packet: {e}"),
            })?;
        Ok(())
    }

    /// Signs our entry of `key` (just written) and our new head.
    pub(super) fn sign_own(&mut self, key: &str) {
        let Some(identity) = self.signing.identity.clone() else {
            return;
        };
        let me = self.members.me();
        let (cluster, name, generation) = (self.cluster_id, &self.me.name, self.me.generation);
        self.members.with_state(me, |s| {
            if let Some(e) = s.get(key) {
                let msg = entry_message(
                    cluster,
                    name,
                    generation,
                    key,
                    &e.value,
                    e.version,
                    e.is_tombstone(),
                );
                let sig = identity.sign(&msg);
                s.sign_entry(key, sig);
            }
            let version = s.max_version();
            let head = identity.sign(&head_message(cluster, name, generation, version));
            s.set_head(version, Box::new(head));
        });
    }

    /// Signs a membership claim this node makes (about itself, or a
    /// suspicion or death it declares), when it has an identity.
    pub(super) fn sign_claim(&self, u: &mut proto::MemberUpdate) {
        let (Some(identity), Some(node)) = (&self.signing.identity, &u.node) else {
            return;
        };
        let state = MemberState::try_from(u.state).unwrap_or(MemberState::Alive);
        let signer = signer_of(state, &node.name, &u.from);
        let msg = signed_claim(
            self.cluster_id,
            &node.name,
            node.generation,
            u,
            state,
            signer,
        );
        u.signature = Bytes::copy_from_slice(&identity.sign(&msg));
    }

    /// Signs our own record's current status and keeps the claim on it, so
    /// that every rumor about us carries it.
    pub(super) fn sign_my_status(&mut self) {
        if self.signing.identity.is_none() {
            return;
        }
        let me = self.members.me();
        let Some((state, incarnation)) = self
            .members
            .get(me)
            .map(|k| (super::msg::state_of(k.status), k.incarnation))
        else {
            return;
        };
        let mut u = super::msg::member_update(&self.me, incarnation, state, &self.me.name);
        self.sign_claim(&mut u);
        let claim = claim_of(&u, state);
        self.members.set_claim(me, claim);
    }

    /// The verified key of the member now called `name` (our own, for our
    /// own name).
    fn key_of_name(&self, name: &str) -> Option<PublicKey> {
        if name == self.me.name {
            let identity = self.signing.identity.as_ref()?;
            return Some(PublicKey::from_bytes(identity.public_key()));
        }
        let member = self.members.key_of(name)?;
        self.signing.keys.get(&member).map(|v| v.key)
    }

    /// Whether a membership claim about member `id` from the network may
    /// be acted on; counts it when not. Alive and left must be signed by
    /// the member, suspect and dead by the accuser (`from`), whenever we
    /// hold that signer's key. Without it, an alive claim still introduces
    /// the member (admission decides; its state needs its identity), and
    /// the rollout stage accepts any claim of a member that does not sign.
    pub(super) fn claim_holds(
        &mut self,
        u: &proto::MemberUpdate,
        id: &NodeId,
        state: MemberState,
    ) -> bool {
        let mode = self.config.signatures;
        if mode == Signatures::Off {
            return true;
        }
        let signer = signer_of(state, &id.name, &u.from);
        let key = if signer == id.name {
            self.signing.keys.get(&id.key()).map(|v| v.key)
        } else {
            self.key_of_name(signer)
        };
        let Some(key) = key else {
            if state == MemberState::Alive || mode == Signatures::Sign {
                return true;
            }
            self.metrics.unsigned_refused += 1;
            return false;
        };
        if u.signature.is_empty() {
            self.metrics.unsigned_refused += 1;
            return false;
        }
        let msg = signed_claim(self.cluster_id, &id.name, id.generation, u, state, signer);
        if key.verify(&msg, &u.signature) {
            return true;
        }
        self.metrics.signatures_invalid += 1;
        false
    }

    /// Whether a digest's word on member `key` (unsigned) cannot be taken
    /// here: we check that member's claims, so only its signed claim will
    /// do.
    pub(super) fn needs_signed_claim(&self, key: u64) -> bool {
        self.config.signatures != Signatures::Off && self.signing.keys.contains_key(&key)
    }

    /// Checks delta `d` about member `id` (table key `member`) before it
    /// is applied: the whole of it, the part up to its first bad entry, or
    /// nothing (each refusal counted).
    pub(super) fn check_delta<'a>(
        &mut self,
        id: &NodeId,
        member: u64,
        d: &'a proto::NodeDelta,
    ) -> Option<Cow<'a, proto::NodeDelta>> {
        let mode = self.config.signatures;
        if mode == Signatures::Off {
            return Some(Cow::Borrowed(d));
        }
        if d.entries.is_empty() && d.to_version == 0 && d.last_gc_version == 0 {
            // An introduction: it claims nothing about the state.
            return Some(Cow::Borrowed(d));
        }
        let key = match self.signing.keys.get(&member) {
            Some(v) => v.key,
            None => match d.entries.iter().find(|e| e.key == IDENTITY_KEY) {
                Some(e) => self.admit_identity(id, member, e)?,
                None => {
                    let signed = !d.head_signature.is_empty()
                        || d.entries.iter().any(|e| !e.signature.is_empty());
                    if signed {
                        // Signed, but we cannot tell by whom yet.
                        self.metrics.deltas_unverifiable += 1;
                        return None;
                    }
                    if mode == Signatures::Require {
                        self.metrics.unsigned_refused += 1;
                        return None;
                    }
                    // The rollout stage: a member that does not sign.
                    return Some(Cow::Borrowed(d));
                }
            },
        };
        if !self.head_holds(id, member, key, d) {
            return None;
        }
        // Entries up to the first that does not verify. Those we already
        // hold at their version or newer are not applied, so not checked.
        let held = |kv: &proto::KeyValue, this: &Engine| {
            this.members
                .get(member)
                .and_then(|k| k.state.get(&kv.key).map(|e| e.version >= kv.version))
                .unwrap_or(false)
        };
        let cut = d.entries.iter().position(|kv| {
            if kv.version <= d.from_version || kv.version > d.to_version {
                self.metrics.signatures_invalid += 1;
                return true;
            }
            if held(kv, self) {
                return false;
            }
            if kv.signature.is_empty() {
                self.metrics.unsigned_refused += 1;
                return true;
            }
            if key.verify(&signed_entry(self.cluster_id, id, kv), &kv.signature) {
                return false;
            }
            self.metrics.signatures_invalid += 1;
            true
        });
        let Some(cut) = cut else {
            return Some(Cow::Borrowed(d));
        };
        // Keep what precedes the bad entry: the range below its version
        // is complete without it.
        let to = d.entries[cut].version.saturating_sub(1);
        if to <= d.from_version {
            return None;
        }
        let mut kept = d.clone();
        kept.entries.truncate(cut);
        kept.to_version = to;
        Some(Cow::Owned(kept))
    }

    /// Whether the delta's head is the owner's signature and bounds it.
    fn head_holds(
        &mut self,
        id: &NodeId,
        member: u64,
        key: PublicKey,
        d: &proto::NodeDelta,
    ) -> bool {
        if d.head_signature.is_empty() {
            self.metrics.unsigned_refused += 1;
            return false;
        }
        if d.to_version > d.head_version || d.last_gc_version > d.head_version {
            self.metrics.signatures_invalid += 1;
            return false;
        }
        let cached = self.signing.keys.get(&member).and_then(|v| v.head.as_ref());
        if cached.is_some_and(|(v, sig)| *v == d.head_version && *sig == d.head_signature) {
            return true;
        }
        let msg = head_message(self.cluster_id, &id.name, id.generation, d.head_version);
        if !key.verify(&msg, &d.head_signature) {
            self.metrics.signatures_invalid += 1;
            return false;
        }
        if let Some(v) = self.signing.keys.get_mut(&member) {
            if v.head.as_ref().is_none_or(|(hv, _)| *hv <= d.head_version) {
                v.head = Some((d.head_version, d.head_signature.clone()));
            }
        }
        true
    }

    /// Takes member `id`'s key from its published identity entry `e`, if
    /// the trust vouches for it and the entry is signed by that key.
    fn admit_identity(
        &mut self,
        id: &NodeId,
        member: u64,
        e: &proto::KeyValue,
    ) -> Option<PublicKey> {
        let trust = self.signing.trust.clone()?;
        let key = match trust.admit(&id.name, &e.value) {
            Ok(key) => key,
            Err(err) => {
                self.metrics.identities_refused += 1;
                // At most MAX_LOGGED names remembered: invented names can
                // neither grow memory nor flood the log.
                let fresh = self.signing.refused.len() < MAX_LOGGED
                    && self.signing.refused.insert(id.name.clone());
                if fresh {
                    tracing::warn!(member = %id.name, error = %err, "identity refused; its state is dropped");
                }
                return None;
            }
        };
        if !key.verify(&signed_entry(self.cluster_id, id, e), &e.signature) {
            self.metrics.signatures_invalid += 1;
            return None;
        }
        self.signing
            .keys
            .insert(member, Verified { key, head: None });
        Some(key)
    }
}

/// What member `id`'s owner signed for the wire entry `kv`.
fn signed_entry(cluster: u32, id: &NodeId, kv: &proto::KeyValue) -> Vec<u8> {
    entry_message(
        cluster,
        &id.name,
        id.generation,
        &kv.key,
        &kv.value,
        kv.version,
        kv.tombstone,
    )
}

/// What `signer` signed for claim `u` (in `state`) about member
/// `name`/`generation`.
fn signed_claim(
    cluster: u32,
    name: &str,
    generation: u64,
    u: &proto::MemberUpdate,
    state: MemberState,
    signer: &str,
) -> Vec<u8> {
    member_message(
        cluster,
        name,
        generation,
        u.incarnation,
        state as u8,
        signer,
    )
}

/// Who signs a claim of `state` about member `name` told by `from`.
fn signer_of<'a>(state: MemberState, name: &'a str, from: &'a str) -> &'a str {
    match state {
        MemberState::Alive | MemberState::Left => name,
        MemberState::Suspect | MemberState::Dead => from,
    }
}

/// The claim a signed update carries, to keep on the member's record.
pub(super) fn claim_of(u: &proto::MemberUpdate, state: MemberState) -> Option<Box<Claim>> {
    let signature = *signature_of(&u.signature)?;
    let name = u.node.as_ref().map_or("", |n| n.name.as_str());
    Some(Box::new(Claim {
        signature,
        signer: signer_of(state, name, &u.from).into(),
    }))
}

#[cfg(test)]
mod tests;
