//! Who calls the self-service API: an [`Account`] that the host application's own
//! authentication established, or an API key (a [`Principal`]) that the gate admitted.
//! [`Caller`] holds whichever of the two a request carries.

use std::fmt;
use std::sync::Arc;

use keygate_core::{OwnerId, Principal};

/// An owner id that the host application's own authentication (its session or JWT
/// layer) established for this request. Inserted into the request's extensions, it
/// lets the self-service API manage that owner's keys without any API key, with full
/// rights: what a dashboard user has. Cheap to clone.
///
/// # How a host inserts it
///
/// keygate does not log users in. The host's session or JWT layer, once it knows who
/// the user is, inserts an `Account` into the request's extensions before the
/// self-service routes run, and keygate takes it from there:
///
/// - axum (`self_service_router`): a middleware around the router that calls
///   `request.extensions_mut().insert(Account::new(user_id))`
///   (`axum::middleware::from_fn`), or `.layer(Extension(Account::new(..)))`.
/// - actix-web (`self_service_scope`): a middleware around the scope that calls
///   `req.extensions_mut().insert(Account::new(user_id))` (`App::wrap_fn`, or your own
///   `Transform`).
///
/// Both adapters look for the account first and only then for the [`Principal`] of an
/// API key, so a signed-in user is served as the account even if the request also
/// carries a key. A key in this gate's format that fails (wrong, revoked, expired) is
/// refused by the gate with 401 before either is looked at; other credentials, such as
/// the host's own bearer token, are left alone. The adapters' module docs show a
/// runnable example.
///
/// ```
/// use keygate_self_service::Account;
///
/// let account = Account::new("acct_1");
/// assert_eq!(account.owner().as_str(), "acct_1");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Account(OwnerId);

impl Account {
    /// The account of `owner`: the owner id its keys carry.
    pub fn new(owner: impl Into<Arc<str>>) -> Self {
        Self(OwnerId::new(owner))
    }

    /// The owner whose keys this account manages.
    pub fn owner(&self) -> &OwnerId {
        &self.0
    }
}

impl From<OwnerId> for Account {
    fn from(owner: OwnerId) -> Self {
        Self(owner)
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Account").field(&self.0).finish()
    }
}

/// Who calls a [`SelfService`](crate::SelfService) method: an [`Account`], an API key
/// (its [`Principal`]), or nobody (answered with the gate's 401 `MISSING_API_KEY`).
/// Adapters build it from the request's extensions; it decides nothing itself.
#[derive(Clone, Debug)]
pub struct Caller(pub(crate) Who);

#[derive(Clone, Debug)]
pub(crate) enum Who {
    Account(Account),
    Key(Principal),
    Nobody,
}

impl Caller {
    /// The caller of a request whose extensions hold `account` and `key`: the account
    /// when there is one, else the key, else nobody.
    pub fn new(account: Option<&Account>, key: Option<&Principal>) -> Self {
        Self(match (account, key) {
            (Some(account), _) => Who::Account(account.clone()),
            (None, Some(key)) => Who::Key(key.clone()),
            (None, None) => Who::Nobody,
        })
    }

    /// [`Caller::new`] with what `extensions` hold (the `http` crate's, which axum and
    /// any tower stack use).
    pub fn from_extensions(extensions: &http::Extensions) -> Self {
        Self::new(extensions.get::<Account>(), extensions.get::<Principal>())
    }

    /// The account, when the caller is one.
    pub fn account(&self) -> Option<&Account> {
        match &self.0 {
            Who::Account(account) => Some(account),
            _ => None,
        }
    }

    /// The API key's principal, when the caller is a key.
    pub fn key(&self) -> Option<&Principal> {
        match &self.0 {
            Who::Key(key) => Some(key),
            _ => None,
        }
    }
}

impl From<Account> for Caller {
    fn from(account: Account) -> Self {
        Self(Who::Account(account))
    }
}

impl From<Principal> for Caller {
    fn from(key: Principal) -> Self {
        Self(Who::Key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_in_the_extensions_comes_before_a_key() {
        let mut extensions = http::Extensions::new();
        assert!(matches!(Caller::from_extensions(&extensions).0, Who::Nobody));
        extensions.insert(Account::new("acct_1"));
        let caller = Caller::from_extensions(&extensions);
        assert_eq!(caller.account().map(|a| a.owner().as_str()), Some("acct_1"));
        assert!(caller.key().is_none());
    }
}
