//! `keygate owners`: an owner's (account's) own limits, shared by all its keys, and the
//! month's spend of its keys together.

use chrono::Utc;
use clap::Subcommand;
use keygate_core::account::OwnerLimits;
use keygate_core::manage::KeyManager;
use keygate_core::spend::Month;
use keygate_core::{OwnerId, RateLimit};
use serde_json::json;

use crate::output::{clean, print_json, time};
use crate::Failure;

#[derive(Subcommand, Debug)]
pub(crate) enum OwnersCommand {
    /// Set an owner's limits, shared by all its keys. A flag not given keeps its value;
    /// `none` lifts it.
    Set {
        /// The owner (account) id.
        owner: String,
        /// The owner's monthly spend cap in micro-cents, across all its keys, or `none`.
        #[arg(long, value_name = "MICRO_CENTS", allow_hyphen_values = true)]
        spend_cap: Option<String>,
        /// Windows all the owner's keys count in together: `100/min,10000/day`, or `none`.
        #[arg(long, value_name = "RATES", allow_hyphen_values = true)]
        rate: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an owner's limits and this month's spend of its keys together.
    Show {
        /// The owner (account) id.
        owner: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `set` was asked to change, checked before the store is opened.
struct Change {
    owner: OwnerId,
    spend_cap: Option<Option<u64>>,
    rate: Option<Vec<RateLimit>>,
}

impl OwnersCommand {
    /// Checks the input; `Err` before anything is opened.
    pub(crate) fn check(&self) -> Result<(), Failure> {
        if let OwnersCommand::Set {
            owner,
            spend_cap,
            rate,
            ..
        } = self
        {
            change(owner, spend_cap.as_deref(), rate.as_deref())?;
        }
        Ok(())
    }

    pub(crate) async fn run(self, keys: KeyManager) -> Result<(), Failure> {
        match self {
            OwnersCommand::Set {
                owner,
                spend_cap,
                rate,
                json,
            } => {
                let change = change(&owner, spend_cap.as_deref(), rate.as_deref())?;
                let now = Utc::now();
                let current = keys
                    .owner_limits(&change.owner)
                    .await?
                    .unwrap_or_else(|| OwnerLimits::new(change.owner.clone(), now));
                let set = keys
                    .set_owner_limits(
                        &change.owner,
                        change.rate.unwrap_or(current.rate_limits),
                        change.spend_cap.unwrap_or(current.spend_cap),
                    )
                    .await?;
                show(&keys, Some(set), &change.owner, json).await
            }
            OwnersCommand::Show { owner, json } => {
                let owner = owner_id(&owner)?;
                let limits = keys.owner_limits(&owner).await?;
                show(&keys, limits, &owner, json).await
            }
        }
    }
}

fn owner_id(owner: &str) -> Result<OwnerId, Failure> {
    let owner = owner.trim();
    if owner.is_empty() || owner.contains('\0') {
        return Err(Failure("the owner must be non-empty text without NUL".into()));
    }
    Ok(OwnerId::new(owner))
}

fn change(owner: &str, spend_cap: Option<&str>, rate: Option<&str>) -> Result<Change, Failure> {
    let owner = owner_id(owner)?;
    let spend_cap = spend_cap
        .map(|cap| match cap.trim() {
            "none" => Ok(None),
            text => text.parse::<u64>().map(Some).map_err(|_| {
                Failure(format!(
                    "invalid spend cap `{text}`: expected a whole number of micro-cents, or `none`"
                ))
            }),
        })
        .transpose()?;
    let rate = rate
        .map(|rate| match rate.trim() {
            "none" => Ok(Vec::new()),
            text => RateLimit::parse_list(text).map_err(Failure::from),
        })
        .transpose()?;
    if spend_cap.is_none() && rate.is_none() {
        return Err(Failure("nothing to set: give --spend-cap, --rate or both".into()));
    }
    Ok(Change {
        owner,
        spend_cap,
        rate,
    })
}

async fn show(
    keys: &KeyManager,
    limits: Option<OwnerLimits>,
    owner: &OwnerId,
    json: bool,
) -> Result<(), Failure> {
    let month = Month::of(Utc::now());
    let spent = keys.owner_spent(owner, month).await?;
    let limits = limits.unwrap_or_else(|| OwnerLimits::new(owner.clone(), Utc::now()));
    let rates: Vec<String> = limits.rate_limits.iter().map(ToString::to_string).collect();
    if json {
        return print_json(&json!({
            "owner": limits.owner,
            "rate_limits": rates,
            "spend_cap": limits.spend_cap,
            "month": month.to_string(),
            "spent": spent,
            "updated_at": limits.updated_at,
        }));
    }
    println!("owner:       {}", clean(owner.as_str()));
    println!(
        "rate limits: {}",
        if rates.is_empty() {
            "none".to_string()
        } else {
            rates.join(",")
        }
    );
    match limits.spend_cap {
        Some(cap) => println!("spend cap:   {cap} micro-cents a month"),
        None => println!("spend cap:   none"),
    }
    println!("spent:       {spent} micro-cents in {month} (recorded; all the owner's keys)");
    println!("updated:     {}", time(limits.updated_at));
    Ok(())
}
