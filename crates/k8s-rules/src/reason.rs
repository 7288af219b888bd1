//! The reasons of a Kubernetes `StatusCause` (`field.ErrorType` in the apiserver) and the label
//! each puts in front of its message (`Invalid value: ...`).

/// A value that breaks a rule.
pub const INVALID: &str = "FieldValueInvalid";
/// A value of the wrong type.
pub const TYPE_INVALID: &str = "FieldValueTypeInvalid";
/// A missing required field.
pub const REQUIRED: &str = "FieldValueRequired";
/// A value outside an enumeration.
pub const NOT_SUPPORTED: &str = "FieldValueNotSupported";
/// A field that may not be set.
pub const FORBIDDEN: &str = "FieldValueForbidden";
/// A string over its length limit.
pub const TOO_LONG: &str = "FieldValueTooLong";
/// A list or map over its size limit.
pub const TOO_MANY: &str = "FieldValueTooMany";
/// A repeated item of a set.
pub const DUPLICATE: &str = "FieldValueDuplicate";
/// A field the schema does not declare: an error where fields are validated strictly, a pruned
/// field (and a warning) where they are not.
pub const UNKNOWN_FIELD: &str = "FieldValueUnknown";

/// The words an apiserver puts before a cause's detail.
pub fn label(reason: &str) -> &'static str {
    match reason {
        REQUIRED => "Required value",
        NOT_SUPPORTED => "Unsupported value",
        FORBIDDEN => "Forbidden",
        TOO_LONG => "Too long",
        TOO_MANY => "Too many",
        DUPLICATE => "Duplicate value",
        UNKNOWN_FIELD => "Unknown field",
        _ => "Invalid value",
    }
}

/// The detail of a message that starts with `reason`'s label (`Invalid value: 0: ...` gives
/// `0: ...`); the whole message when it does not.
pub fn detail<'a>(reason: &str, message: &'a str) -> &'a str {
    message
        .strip_prefix(label(reason))
        .map(|rest| rest.strip_prefix(": ").unwrap_or(rest))
        .unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_details() {
        assert_eq!(label(TYPE_INVALID), "Invalid value");
        assert_eq!(label(REQUIRED), "Required value");
        assert_eq!(
            detail(INVALID, "Invalid value: 0: should be at least 1"),
            "0: should be at least 1"
        );
        assert_eq!(detail(REQUIRED, "Required value"), "");
        assert_eq!(
            detail(INVALID, "unknown field \"x\""),
            "unknown field \"x\""
        );
    }
}
