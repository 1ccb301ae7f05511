package metrics

// reasonKind classifies a known reason_id for the metrics that count a
// subset of denials.
type reasonKind uint8

const (
	kindOther reasonKind = iota
	kindAuth             // an authentication failure: counted in moat_auth_failures_total
)

// knownReasons are the reason_id label values metrics keep; any other value
// is counted as "other", so that a bug or a new stage cannot grow the label
// set without bound. TestKnownReasonsCoverDocs checks that every reason in
// docs/reasons.md is here.
var knownReasons = map[string]reasonKind{
	// versioning
	"version_not_supported": kindOther, "version_required": kindOther, "api_version_retired": kindOther,
	"upstream_error": kindOther, "response_schema_violation": kindOther,
	// kernel
	"route_not_found": kindOther, "method_not_allowed": kindOther, "invalid_path": kindOther,
	"body_too_large": kindOther, "body_read_failed": kindOther, "invalid_json": kindOther,
	"upstream_unreachable": kindOther, "upstream_timeout": kindOther, "upstream_unavailable": kindOther,
	"upstream_circuit_open": kindOther, "upstream_bad_response": kindOther, "internal_error": kindOther,
	"cors_origin_denied": kindOther, "cors_preflight_denied": kindOther,
	// authentication
	"invalid_credentials": kindAuth, "credentials_missing": kindAuth, "auth_locked_out": kindAuth,
	"authn_unavailable": kindOther, // the authenticator could not answer: an error, not a failed login
	"api_key_malformed": kindAuth, "api_key_unknown": kindAuth, "api_key_revoked": kindAuth, "api_key_expired": kindAuth,
	"basic_malformed": kindAuth, "basic_invalid": kindAuth,
	"jwt_malformed": kindAuth, "jwt_too_large": kindAuth, "jwt_header_forbidden": kindAuth,
	"jwt_algorithm_not_allowed": kindAuth, "jwt_issuer_unknown": kindAuth, "jwt_type_mismatch": kindAuth,
	"jwt_key_unknown": kindAuth, "jwt_signature_invalid": kindAuth, "jwt_expired": kindAuth,
	"jwt_not_yet_valid": kindAuth, "jwt_audience_mismatch": kindAuth, "jwt_claims_missing": kindAuth,
	"jwt_cert_binding_mismatch": kindAuth,
	"token_malformed":           kindAuth, "token_inactive": kindAuth, "token_scope_missing": kindAuth, "token_no_subject": kindAuth,
	"client_cert_no_identity": kindAuth, "client_cert_ca_not_allowed": kindAuth, "client_cert_expired": kindAuth,
	// authorization
	"method_denied": kindOther, "role_required": kindOther, "scope_required": kindOther,
	"policy_denied": kindOther, "owner_mismatch": kindOther, "property_denied": kindOther,
	// rate limits
	"rate_limited": kindOther, "quota_exceeded": kindOther, "plan_unknown": kindOther,
	"concurrency_limited": kindOther, "limiter_unavailable": kindOther,
	// payload limits
	"url_too_long": kindOther, "query_too_long": kindOther, "too_many_headers": kindOther,
	"unsupported_content_encoding": kindOther, "decompression_failed": kindOther,
	"decompression_ratio_exceeded": kindOther, "decompressed_too_large": kindOther,
	"invalid_content_type": kindOther, "json_too_deep": kindOther, "json_too_many_keys": kindOther,
	"json_array_too_long": kindOther, "json_string_too_long": kindOther, "json_number_too_long": kindOther,
	"invalid_xml": kindOther, "xml_dtd_forbidden": kindOther, "xml_xinclude_forbidden": kindOther,
	"xml_too_deep": kindOther, "xml_too_many_tokens": kindOther, "xml_too_many_attributes": kindOther,
	"invalid_multipart": kindOther, "multipart_too_many_parts": kindOther, "multipart_part_too_large": kindOther,
	"multipart_part_too_many_headers": kindOther, "invalid_form": kindOther, "form_too_many_fields": kindOther,
	"form_field_too_long": kindOther,
	// OpenAPI validation
	"schema_violation": kindOther, "invalid_parameter": kindOther, "missing_parameter": kindOther,
	"undeclared_parameter": kindOther, "missing_body": kindOther, "unexpected_body": kindOther,
	"unsupported_media_type": kindOther, "operation_not_documented": kindOther,
	// WAF, masking, anomaly detection
	"waf_blocked": kindOther, "waf_uninspectable": kindOther, "waf_error": kindOther,
	"sensitive_data_blocked": kindOther, "response_unscannable": kindOther,
	"temporarily_blocked": kindOther, "block_store_unavailable": kindOther,
}

// reasonWAFBlocked is the reason of a request the WAF refused; its matched
// rules are counted in moat_waf_blocks_total.
const reasonWAFBlocked = "waf_blocked"
