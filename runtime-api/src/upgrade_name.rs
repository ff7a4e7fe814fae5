//! The rule for upgrade plan names, shared by the chain (which refuses a plan with a bad name)
//! and the supervisor (which refuses an `upgrade-info.json` with one): names become directory
//! names on validators' disks, so they must never carry path characters.

use core::fmt;

/// The longest name, in bytes.
pub const MAX_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside `[a-z0-9._-]`.
    Character {
        /// The first such character.
        found: char,
    },
    /// The name starts with `.` (a hidden directory, or `..`).
    LeadingDot,
}

/// Checks `name`: non-empty, at most 64 bytes, only `[a-z0-9._-]`, not starting with `.`.
pub fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return Err(NameError::Character { found });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot);
    }
    Ok(())
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("upgrade name is empty"),
            NameError::TooLong { len } => {
                write!(f, "upgrade name is {len} bytes; the limit is {MAX_LEN}")
            }
            NameError::Character { found } => write!(
                f,
                "upgrade name contains {found:?}; only a-z, 0-9, '.', '_' and '-' are allowed"
            ),
            NameError::LeadingDot => f.write_str("upgrade name must not start with '.'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_characters_are_refused() {
        assert_eq!(check("v1.2.0-fix_a"), Ok(()));
        assert_eq!(check(""), Err(NameError::Empty));
        assert_eq!(check("../x"), Err(NameError::Character { found: '/' }));
        assert_eq!(check("a\\b"), Err(NameError::Character { found: '\\' }));
        assert_eq!(check(".hidden"), Err(NameError::LeadingDot));
        assert_eq!(check(".."), Err(NameError::LeadingDot));
        assert_eq!(check("UP"), Err(NameError::Character { found: 'U' }));
        assert_eq!(check(&"a".repeat(65)), Err(NameError::TooLong { len: 65 }));
        assert_eq!(check(&"a".repeat(64)), Ok(()));
    }
}
