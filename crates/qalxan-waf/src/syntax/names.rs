//! The names SecLang knows: directives, variables (collections), operators, actions and
//! transformations, as ModSecurity's reference manual lists them. Lookups are case-insensitive
//! and return the canonical spelling, so later stages compare `&'static str`s.

/// Directives that configure the engine rather than define rules. Their arguments are kept as
/// written and interpreted when the rule set is compiled.
pub const SETTINGS: &[&str] = &[
    "SecArgumentSeparator",
    "SecArgumentsLimit",
    "SecAuditEngine",
    "SecAuditLog",
    "SecAuditLog2",
    "SecAuditLogDirMode",
    "SecAuditLogFileMode",
    "SecAuditLogFormat",
    "SecAuditLogParts",
    "SecAuditLogRelevantStatus",
    "SecAuditLogStorageDir",
    "SecAuditLogType",
    "SecCollectionTimeout",
    "SecComponentSignature",
    "SecConnEngine",
    "SecContentInjection",
    "SecCookieFormat",
    "SecCookieV0Separator",
    "SecDataDir",
    "SecDebugLog",
    "SecDebugLogLevel",
    "SecDisableBackendCompression",
    "SecGeoLookupDb",
    "SecGsbLookupDb",
    "SecHashEngine",
    "SecHttpBlKey",
    "SecInterceptOnError",
    "SecPcreMatchLimit",
    "SecPcreMatchLimitRecursion",
    "SecReadStateLimit",
    "SecRequestBodyAccess",
    "SecRequestBodyInMemoryLimit",
    "SecRequestBodyJsonDepthLimit",
    "SecRequestBodyLimit",
    "SecRequestBodyLimitAction",
    "SecRequestBodyNoFilesLimit",
    "SecResponseBodyAccess",
    "SecResponseBodyLimit",
    "SecResponseBodyLimitAction",
    "SecResponseBodyMimeType",
    "SecResponseBodyMimeTypesClear",
    "SecRuleEngine",
    "SecSensorId",
    "SecServerSignature",
    "SecStatusEngine",
    "SecStreamInBodyInspection",
    "SecStreamOutBodyInspection",
    "SecTmpDir",
    "SecTmpSaveUploadedFiles",
    "SecUnicodeMapFile",
    "SecUploadDir",
    "SecUploadFileLimit",
    "SecUploadFileMode",
    "SecUploadKeepFiles",
    "SecWebAppId",
    "SecWriteStateLimit",
    "SecXmlExternalEntity",
];

pub const VARIABLES: &[&str] = &[
    "ARGS",
    "ARGS_COMBINED_SIZE",
    "ARGS_GET",
    "ARGS_GET_NAMES",
    "ARGS_NAMES",
    "ARGS_POST",
    "ARGS_POST_NAMES",
    "AUTH_TYPE",
    "DURATION",
    "ENV",
    "FILES",
    "FILES_COMBINED_SIZE",
    "FILES_NAMES",
    "FILES_SIZES",
    "FILES_TMPNAMES",
    "FILES_TMP_CONTENT",
    "FULL_REQUEST",
    "FULL_REQUEST_LENGTH",
    "GEO",
    "GLOBAL",
    "HIGHEST_SEVERITY",
    "INBOUND_DATA_ERROR",
    "IP",
    "MATCHED_VAR",
    "MATCHED_VARS",
    "MATCHED_VAR_NAME",
    "MATCHED_VARS_NAMES",
    "MODSEC_BUILD",
    "MSC_PCRE_LIMITS_EXCEEDED",
    "MULTIPART_BOUNDARY_QUOTED",
    "MULTIPART_BOUNDARY_WHITESPACE",
    "MULTIPART_CRLF_LF_LINES",
    "MULTIPART_DATA_AFTER",
    "MULTIPART_DATA_BEFORE",
    "MULTIPART_FILE_LIMIT_EXCEEDED",
    "MULTIPART_FILENAME",
    "MULTIPART_HEADER_FOLDING",
    "MULTIPART_INVALID_HEADER_FOLDING",
    "MULTIPART_INVALID_PART",
    "MULTIPART_INVALID_QUOTING",
    "MULTIPART_LF_LINE",
    "MULTIPART_MISSING_SEMICOLON",
    "MULTIPART_NAME",
    "MULTIPART_PART_HEADERS",
    "MULTIPART_STRICT_ERROR",
    "MULTIPART_UNMATCHED_BOUNDARY",
    "OUTBOUND_DATA_ERROR",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "REMOTE_USER",
    "REQBODY_ERROR",
    "REQBODY_ERROR_MSG",
    "REQBODY_PROCESSOR",
    "REQBODY_PROCESSOR_ERROR",
    "REQBODY_PROCESSOR_ERROR_MSG",
    "REQUEST_BASENAME",
    "REQUEST_BODY",
    "REQUEST_BODY_LENGTH",
    "REQUEST_COOKIES",
    "REQUEST_COOKIES_NAMES",
    "REQUEST_FILENAME",
    "REQUEST_HEADERS",
    "REQUEST_HEADERS_NAMES",
    "REQUEST_LINE",
    "REQUEST_METHOD",
    "REQUEST_PROTOCOL",
    "REQUEST_URI",
    "REQUEST_URI_RAW",
    "RESOURCE",
    "RESPONSE_BODY",
    "RESPONSE_CONTENT_LENGTH",
    "RESPONSE_CONTENT_TYPE",
    "RESPONSE_HEADERS",
    "RESPONSE_HEADERS_NAMES",
    "RESPONSE_PROTOCOL",
    "RESPONSE_STATUS",
    "RULE",
    "SERVER_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "SESSION",
    "SESSIONID",
    "STATUS_LINE",
    "TIME",
    "TIME_DAY",
    "TIME_EPOCH",
    "TIME_HOUR",
    "TIME_MIN",
    "TIME_MON",
    "TIME_SEC",
    "TIME_WDAY",
    "TIME_YEAR",
    "TX",
    "UNIQUE_ID",
    "URLENCODED_ERROR",
    "USER",
    "USERID",
    "WEBAPPID",
    "WEBSERVER_ERROR_LOG",
    "XML",
];

pub const OPERATORS: &[&str] = &[
    "beginsWith",
    "contains",
    "containsWord",
    "detectSQLi",
    "detectXSS",
    "endsWith",
    "eq",
    "fuzzyHash",
    "ge",
    "geoLookup",
    "gsbLookup",
    "gt",
    "inspectFile",
    "ipMatch",
    "ipMatchF",
    "ipMatchFromFile",
    "le",
    "lt",
    "noMatch",
    "pm",
    "pmf",
    "pmFromFile",
    "rbl",
    "rsub",
    "rx",
    "rxGlobal",
    "streq",
    "strmatch",
    "unconditionalMatch",
    "validateByteRange",
    "validateDTD",
    "validateHash",
    "validateSchema",
    "validateUrlEncoding",
    "validateUtf8Encoding",
    "verifyCC",
    "verifyCPF",
    "verifySSN",
    "verifySVNR",
    "within",
];

pub const ACTIONS: &[&str] = &[
    "accuracy",
    "allow",
    "append",
    "auditlog",
    "block",
    "capture",
    "chain",
    "ctl",
    "deny",
    "deprecatevar",
    "drop",
    "exec",
    "expirevar",
    "id",
    "initcol",
    "log",
    "logdata",
    "maturity",
    "msg",
    "multiMatch",
    "noauditlog",
    "nolog",
    "pass",
    "pause",
    "phase",
    "prepend",
    "proxy",
    "redirect",
    "rev",
    "sanitiseArg",
    "sanitiseMatched",
    "sanitiseMatchedBytes",
    "sanitiseRequestHeader",
    "sanitiseResponseHeader",
    "setenv",
    "setrsc",
    "setsid",
    "setuid",
    "setvar",
    "severity",
    "skip",
    "skipAfter",
    "status",
    "t",
    "tag",
    "ver",
    "xmlns",
];

pub const TRANSFORMATIONS: &[&str] = &[
    "base64Decode",
    "base64DecodeExt",
    "base64Encode",
    "cmdLine",
    "compressWhitespace",
    "cssDecode",
    "escapeSeqDecode",
    "hexDecode",
    "hexEncode",
    "htmlEntityDecode",
    "jsDecode",
    "length",
    "lowercase",
    "md5",
    "none",
    "normalisePath",
    "normalisePathWin",
    "normalizePath",
    "normalizePathWin",
    "parityEven7bit",
    "parityOdd7bit",
    "parityZero7bit",
    "removeComments",
    "removeCommentsChar",
    "removeNulls",
    "removeWhitespace",
    "replaceComments",
    "replaceNulls",
    "sha1",
    "sqlHexDecode",
    "trim",
    "trimLeft",
    "trimRight",
    "uppercase",
    "urlDecode",
    "urlDecodeUni",
    "urlEncode",
    "utf8toUnicode",
];

/// Directives that define or adjust rules, and the file inclusions.
pub const RULE_DIRECTIVES: &[&str] = &[
    "Include",
    "IncludeOptional",
    "SecAction",
    "SecDefaultAction",
    "SecMarker",
    "SecRule",
    "SecRuleRemoveById",
    "SecRuleRemoveByMsg",
    "SecRuleRemoveByTag",
    "SecRuleUpdateActionById",
    "SecRuleUpdateTargetById",
    "SecRuleUpdateTargetByMsg",
    "SecRuleUpdateTargetByTag",
];

/// The canonical spelling of `name` in `table`, ignoring case.
pub fn lookup(table: &[&'static str], name: &str) -> Option<&'static str> {
    table.iter().copied().find(|n| n.eq_ignore_ascii_case(name))
}

/// Up to three names from `table` that look like `name`, for "did you mean" hints.
pub fn suggest(table: &[&'static str], name: &str) -> Vec<&'static str> {
    // Names are short identifiers; comparing anything else would only cost time.
    if name.len() > 40 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Vec::new();
    }
    let lower = name.to_ascii_lowercase();
    let mut scored: Vec<(usize, &'static str)> = table
        .iter()
        .map(|n| (edit_distance(&lower, &n.to_ascii_lowercase()), *n))
        .filter(|(d, _)| *d <= 2.max(lower.len() / 4))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_suggest() {
        assert_eq!(lookup(OPERATORS, "RX"), Some("rx"));
        assert_eq!(
            lookup(VARIABLES, "request_headers"),
            Some("REQUEST_HEADERS")
        );
        assert_eq!(lookup(ACTIONS, "skipafter"), Some("skipAfter"));
        assert_eq!(suggest(TRANSFORMATIONS, "urlDecodUni"), ["urlDecodeUni"]);
        assert_eq!(suggest(VARIABLES, "ARGZ"), ["ARGS"]);
    }

    #[test]
    fn tables_are_sorted_without_duplicates() {
        for table in [
            SETTINGS,
            RULE_DIRECTIVES,
            VARIABLES,
            OPERATORS,
            ACTIONS,
            TRANSFORMATIONS,
        ] {
            let mut sorted = table.to_vec();
            sorted.sort_by_key(|n| n.to_ascii_lowercase());
            sorted.dedup_by_key(|n| n.to_ascii_lowercase());
            assert_eq!(sorted.len(), table.len());
        }
    }
}
