package config

// Config is the whole gateway configuration, decoded from one YAML file.
// Defaults are applied by Load (see defaults.go); a zero Config is not valid.
type Config struct {
	Server           Server                    `yaml:"server" jsonschema:"description=Timeouts, limits and client handling shared by every listener."`
	Listeners        []Listener                `yaml:"listeners" jsonschema:"description=Sockets the gateway accepts traffic on. At least one.,minItems=1"`
	Log              Log                       `yaml:"log" jsonschema:"description=Process and access logging."`
	SecurityHeaders  SecurityHeaders           `yaml:"security_headers" jsonschema:"description=Response headers the gateway sets or removes on every response."`
	CORS             *CORS                     `yaml:"cors,omitempty" jsonschema:"description=Default CORS policy for every route; a route's own cors block replaces it."`
	Admin            *Admin                    `yaml:"admin,omitempty" jsonschema:"description=The admin listener: admin API; Prometheus metrics; health endpoints (docs/admin.md). Off unless set."`
	Anomaly          *Anomaly                  `yaml:"anomaly,omitempty" jsonschema:"description=Anomaly detection per principal and client address: credential stuffing; enumeration; volume spikes; WAF bursts; with alerts and optional temporary blocks (docs/anomaly.md)."`
	Tracing          *Tracing                  `yaml:"tracing,omitempty" jsonschema:"description=OpenTelemetry traces: a span per request and per stage; W3C traceparent from trusted peers; OTLP export (docs/tracing.md)."`
	Audit            *Audit                    `yaml:"audit,omitempty" jsonschema:"description=Audit events: one per request and per reload; sinks; spool; hash chain (docs/audit.md)."`
	SafeErrors       *SafeErrors               `yaml:"safe_errors,omitempty" jsonschema:"description=Replace upstream error bodies with problem+json (docs/safe-errors.md). On by default for 5xx; a route's safe_errors replaces it."`
	PayloadLimits    PayloadLimits             `yaml:"payload_limits" jsonschema:"description=Bounds on the shape of every request (URL and header counts; JSON and XML and multipart and form bodies; compressed bodies); on for every route. A route's payload_limits overrides single fields."`
	Authenticators   map[string]*Authenticator `yaml:"authenticators" jsonschema:"description=Named authenticators that routes list in their auth block."`
	PrincipalHeaders PrincipalHeaders          `yaml:"principal_headers" jsonschema:"description=Headers that carry the authenticated principal to the upstream. Client-sent copies are always removed."`
	BruteForce       BruteForce                `yaml:"brute_force" jsonschema:"description=Lock out clients that fail authentication repeatedly."`
	State            State                     `yaml:"state" jsonschema:"description=Where shared state (rate limits) lives: in memory, or in Redis for several instances."`
	RateLimits       map[string]*RateLimit     `yaml:"rate_limits" jsonschema:"description=Named rate limits, quotas and concurrency limits that routes, upstreams and plans apply."`
	Plans            map[string]*Plan          `yaml:"plans" jsonschema:"description=Named plans: the rate limits and quotas an authenticated principal meets on every route with auth, chosen by its API key's plan or a token claim."`
	PlanClaim        string                    `yaml:"plan_claim" jsonschema:"description=Token claim (JWT, introspection) naming the principal's plan. API keys carry their plan (moat keys create --plan). Default plan."`
	DefaultPlan      string                    `yaml:"default_plan" jsonschema:"description=Plan of authenticated principals that name none. Empty: they meet only their routes' limits."`
	Upstreams        map[string]*Upstream      `yaml:"upstreams" jsonschema:"description=Named backends that routes forward to."`
	Routes           []*Route                  `yaml:"routes" jsonschema:"description=Routes, matched by host, method and path template; the most specific wins.,minItems=1"`

	file string              // file the configuration came from
	pos  map[string]position // field path -> position in file
}

// Server holds the settings shared by every listener.
type Server struct {
	ReadHeaderTimeout Duration `yaml:"read_header_timeout" jsonschema:"description=Time a client has to send the request line and headers (slow-header defence). Default 5s."`
	ReadTimeout       Duration `yaml:"read_timeout" jsonschema:"description=Time a client has to send the whole request including the body. Default 30s."`
	WriteTimeout      Duration `yaml:"write_timeout" jsonschema:"description=Time to write the whole response, counted from the end of the request headers. Default 60s."`
	IdleTimeout       Duration `yaml:"idle_timeout" jsonschema:"description=How long an idle keep-alive connection is kept. Default 120s."`
	MaxHeaderBytes    Size     `yaml:"max_header_bytes" jsonschema:"description=Largest request line plus headers; larger requests get 431. Default 32KiB."`
	MaxBody           Size     `yaml:"max_body" jsonschema:"description=Default request body cap for routes that set none; larger bodies get 413. Default 1MiB."`
	ShutdownGrace     Duration `yaml:"shutdown_grace" jsonschema:"description=On SIGTERM, how long in-flight requests may take to finish. Default 30s."`
	TrustedProxies    []Prefix `yaml:"trusted_proxies" jsonschema:"description=Peers (addresses or CIDR prefixes) whose forwarding headers and request IDs are believed. Empty: none."`
	ClientIPHeader    string   `yaml:"client_ip_header" jsonschema:"description=Header read from trusted proxies to find the client address.,enum=x-forwarded-for,enum=forwarded,enum=x-real-ip"`
	RequestIDHeader   string   `yaml:"request_id_header" jsonschema:"description=Header carrying the request ID to the upstream and back to the client. Default X-Request-ID."`
	WatchConfig       *bool    `yaml:"watch_config" jsonschema:"description=Reload when the configuration file changes on disk (SIGHUP always reloads). Default true."`
	MaxConnections    int      `yaml:"max_connections" jsonschema:"description=Most connections each listener holds open at once; past it the listener stops accepting and new connections wait in the kernel backlog until one closes. Default 10000. Needs a restart to change.,minimum=1,maximum=1000000"`
}

// Listener is one socket the gateway serves on.
type Listener struct {
	Name          string         `yaml:"name" jsonschema:"description=Name used in logs. Default: the address."`
	Address       string         `yaml:"address" jsonschema:"description=host:port to listen on, e.g. 127.0.0.1:8080 or :8443."`
	TLS           *ListenerTLS   `yaml:"tls,omitempty" jsonschema:"description=Serve HTTPS (HTTP/2 and HTTP/1.1) with these settings."`
	H2C           bool           `yaml:"h2c" jsonschema:"description=Accept HTTP/2 without TLS (prior knowledge) on a plain listener."`
	RedirectHTTPS *RedirectHTTPS `yaml:"redirect_https,omitempty" jsonschema:"description=Answer every request on this plain listener with a 308 redirect to HTTPS instead of serving it."`
}

// ListenerTLS configures HTTPS and optional mutual TLS on a listener.
type ListenerTLS struct {
	CertFile   string      `yaml:"cert_file" jsonschema:"description=PEM certificate chain. Reloaded when it changes on disk."`
	KeyFile    string      `yaml:"key_file" jsonschema:"description=PEM private key. Reloaded when it changes on disk."`
	MinVersion string      `yaml:"min_version" jsonschema:"description=Lowest TLS version accepted. Default 1.2.,enum=1.2,enum=1.3"`
	ClientAuth *ClientAuth `yaml:"client_auth,omitempty" jsonschema:"description=Mutual TLS: verify client certificates against a CA bundle."`
	HSTS       HSTS        `yaml:"hsts" jsonschema:"description=Strict-Transport-Security sent on this listener's responses."`
}

// ClientAuth configures client-certificate verification.
type ClientAuth struct {
	Mode   string `yaml:"mode" jsonschema:"description=require: a verified certificate is needed to connect. optional: verified when given.,enum=require,enum=optional"`
	CAFile string `yaml:"ca_file" jsonschema:"description=PEM bundle of CAs trusted to sign client certificates. Reloaded when it changes."`
}

// HSTS configures the Strict-Transport-Security header on TLS listeners.
type HSTS struct {
	Disabled          bool     `yaml:"disabled" jsonschema:"description=Do not send Strict-Transport-Security."`
	MaxAge            Duration `yaml:"max_age" jsonschema:"description=max-age of the policy. Default 365d."`
	IncludeSubdomains *bool    `yaml:"include_subdomains" jsonschema:"description=Add includeSubDomains. Default true."`
	Preload           bool     `yaml:"preload" jsonschema:"description=Add preload."`
}

// RedirectHTTPS makes a plain listener redirect to HTTPS.
type RedirectHTTPS struct {
	Port int `yaml:"port" jsonschema:"description=HTTPS port to redirect to. Default 443.,minimum=1,maximum=65535"`
}

// Log configures process and access logs.
type Log struct {
	Format string `yaml:"format" jsonschema:"description=json (default) or text.,enum=json,enum=text"`
	Level  string `yaml:"level" jsonschema:"description=debug, info (default), warn or error.,enum=debug,enum=info,enum=warn,enum=error"`
	Access *bool  `yaml:"access" jsonschema:"description=Write one access log line per request. Default true."`
	Sync   bool   `yaml:"sync" jsonschema:"description=Write every line at once. Default false: lines are buffered (64 KiB) and written at least every 100ms and at shutdown."`
}

// SecurityHeaders lists the response headers the gateway enforces. Empty
// strings take the secure default; "off" disables a header.
type SecurityHeaders struct {
	Disabled              bool     `yaml:"disabled" jsonschema:"description=Turn the whole stage off (not recommended)."`
	ContentTypeOptions    string   `yaml:"content_type_options" jsonschema:"description=X-Content-Type-Options. Default nosniff; off to omit."`
	FrameOptions          string   `yaml:"frame_options" jsonschema:"description=X-Frame-Options. Default DENY; off to omit."`
	ContentSecurityPolicy string   `yaml:"content_security_policy" jsonschema:"description=Content-Security-Policy. Default: default-src 'none'; frame-ancestors 'none'. off to omit."`
	ReferrerPolicy        string   `yaml:"referrer_policy" jsonschema:"description=Referrer-Policy. Default no-referrer; off to omit."`
	CacheControl          string   `yaml:"cache_control" jsonschema:"description=Cache-Control set when the upstream sent none. Default no-store; off to omit."`
	Remove                []string `yaml:"remove" jsonschema:"description=Upstream response headers removed. Default: Server; X-Powered-By; X-AspNet-Version; X-AspNetMvc-Version; X-Runtime; X-Generator; X-Backend-Server; X-Debug-*. Names ending in * match a prefix."`
}

// CORS is a cross-origin resource sharing policy.
type CORS struct {
	Disabled           bool     `yaml:"disabled" jsonschema:"description=No CORS handling on this route (cross-origin browser requests then fail)."`
	AllowOrigins       []string `yaml:"allow_origins" jsonschema:"description=Exact origins (https://app.example.com) or patterns with * for one or more DNS labels (https://*.example.com). A lone * allows any origin and cannot be combined with credentials."`
	AllowMethods       []string `yaml:"allow_methods" jsonschema:"description=Methods allowed cross-origin. Default: the route's methods."`
	AllowHeaders       []string `yaml:"allow_headers" jsonschema:"description=Request headers allowed cross-origin, besides CORS-safelisted ones."`
	ExposeHeaders      []string `yaml:"expose_headers" jsonschema:"description=Response headers scripts may read."`
	AllowCredentials   bool     `yaml:"allow_credentials" jsonschema:"description=Send Access-Control-Allow-Credentials: true."`
	MaxAge             Duration `yaml:"max_age" jsonschema:"description=How long browsers may cache a preflight. Default 10m."`
	DenyUnknownOrigins *bool    `yaml:"deny_unknown_origins" jsonschema:"description=Reject (403 cors_origin_denied) non-preflight requests whose Origin is not allowed, instead of only omitting CORS headers. Default true."`
}

// Upstream is a named backend with one or more targets.
type Upstream struct {
	Targets        []URL           `yaml:"targets" jsonschema:"description=Base URLs (http or https) of the backend's instances; requests are spread round robin.,minItems=1"`
	OpenAPI        *OpenAPI        `yaml:"openapi,omitempty" jsonschema:"description=The backend's OpenAPI document: every operation becomes a route (x-moat-auth; x-moat-rate-limits; x-moat-owner) validated against it (docs/openapi.md)."`
	PassHost       bool            `yaml:"pass_host" jsonschema:"description=Send the client's Host header instead of the target's."`
	Timeouts       UpstreamTimeout `yaml:"timeouts" jsonschema:"description=Connect, response-header and overall timeouts."`
	MaxIdleConns   int             `yaml:"max_idle_conns" jsonschema:"description=Idle keep-alive connections kept per target. Default 256.,minimum=1"`
	TLS            *UpstreamTLS    `yaml:"tls,omitempty" jsonschema:"description=TLS to https targets: CA bundle, server name, client certificate."`
	HealthCheck    *HealthCheck    `yaml:"health_check,omitempty" jsonschema:"description=Active health checks; unhealthy targets receive no traffic."`
	Passive        PassiveHealth   `yaml:"passive" jsonschema:"description=Passive ejection of targets that fail consecutive requests."`
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker,omitempty" jsonschema:"description=Stop sending traffic to a failing upstream for a while (503 upstream_circuit_open)."`
	RateLimits     []string        `yaml:"rate_limits" jsonschema:"description=Names of rate limits applied to every route that forwards to this upstream (a global limit protecting the backend)."`
}

// UpstreamTimeout bounds each phase of an upstream exchange.
type UpstreamTimeout struct {
	Connect        Duration `yaml:"connect" jsonschema:"description=TCP and TLS connection establishment. Default 5s."`
	ResponseHeader Duration `yaml:"response_header" jsonschema:"description=From the request being written to the response headers arriving. Default 30s."`
	Overall        Duration `yaml:"overall" jsonschema:"description=The whole upstream exchange including the response body. Default 60s."`
}

// UpstreamTLS configures TLS towards https targets.
type UpstreamTLS struct {
	CAFile     string `yaml:"ca_file" jsonschema:"description=PEM CA bundle used to verify targets instead of the system roots."`
	ServerName string `yaml:"server_name" jsonschema:"description=Name expected in the target's certificate (SNI). Default: the target host."`
	CertFile   string `yaml:"cert_file" jsonschema:"description=Client certificate for mutual TLS to the upstream."`
	KeyFile    string `yaml:"key_file" jsonschema:"description=Key of the client certificate."`
}

// HealthCheck configures active health checking of each target.
type HealthCheck struct {
	Path               string   `yaml:"path" jsonschema:"description=Path requested with GET on each target. Default /healthz."`
	Interval           Duration `yaml:"interval" jsonschema:"description=Time between checks. Default 10s."`
	Timeout            Duration `yaml:"timeout" jsonschema:"description=Time a check may take. Default 2s."`
	HealthyThreshold   int      `yaml:"healthy_threshold" jsonschema:"description=Consecutive successes that mark a target healthy. Default 2.,minimum=1"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold" jsonschema:"description=Consecutive failures that mark a target unhealthy. Default 3.,minimum=1"`
	ExpectStatus       []int    `yaml:"expect_status" jsonschema:"description=Statuses counted as healthy. Default: any 2xx."`
}

// PassiveHealth ejects a target after consecutive failed requests.
type PassiveHealth struct {
	Disabled    bool     `yaml:"disabled" jsonschema:"description=Never eject targets passively."`
	MaxFailures int      `yaml:"max_failures" jsonschema:"description=Consecutive failures (connection errors, timeouts, 502/503/504) that eject a target. Default 5.,minimum=1"`
	Ejection    Duration `yaml:"ejection" jsonschema:"description=How long an ejected target gets no traffic. Default 30s."`
}

// CircuitBreaker opens when too many requests to an upstream fail.
type CircuitBreaker struct {
	FailureRatio     float64  `yaml:"failure_ratio" jsonschema:"description=Share of failed requests in the window that opens the breaker. Default 0.5.,exclusiveMinimum=0,maximum=1"`
	MinRequests      int      `yaml:"min_requests" jsonschema:"description=Requests in the window before the ratio is considered. Default 20.,minimum=1"`
	Window           Duration `yaml:"window" jsonschema:"description=Length of the counting window while closed. Default 10s."`
	OpenFor          Duration `yaml:"open_for" jsonschema:"description=How long the breaker stays open before letting probes through. Default 30s."`
	HalfOpenRequests int      `yaml:"half_open_requests" jsonschema:"description=Probe requests allowed while half-open. Default 5.,minimum=1"`
}

// Route maps host + methods + path template to an upstream, with the
// protections that apply to it.
type Route struct {
	Name              string             `yaml:"name" jsonschema:"description=Unique name used in logs, metrics and audit. Default: METHODS path."`
	Host              string             `yaml:"host" jsonschema:"description=Host to match: exact (api.example.com), wildcard (*.example.com) or empty for any."`
	Path              string             `yaml:"path" jsonschema:"description=Path template: /books, /books/{id}, /files/{path...} (catch-all, last segment only)."`
	Methods           []string           `yaml:"methods" jsonschema:"description=Methods served; others get 405 with Allow. GET also serves HEAD. TRACE and CONNECT are refused.,minItems=1"`
	Upstream          string             `yaml:"upstream" jsonschema:"description=Name of the upstream requests are forwarded to."`
	Rewrite           Rewrite            `yaml:"rewrite" jsonschema:"description=Change the path sent upstream."`
	Auth              *RouteAuth         `yaml:"auth,omitempty" jsonschema:"description=How requests to this route are authenticated: the authenticators tried in order. Zero trust: a route needs auth or public: true."`
	Public            bool               `yaml:"public" jsonschema:"description=Explicitly allow unauthenticated access. Zero trust: a route must have an auth block or public: true, not both."`
	MaxBody           *Size              `yaml:"max_body,omitempty" jsonschema:"description=Request body cap for this route; larger bodies get 413, checked while streaming. Default: server.max_body."`
	Timeout           Duration           `yaml:"timeout" jsonschema:"description=Overall upstream timeout for this route, replacing the upstream's."`
	CORS              *CORS              `yaml:"cors,omitempty" jsonschema:"description=CORS policy for this route, replacing the top-level one."`
	RateLimits        []string           `yaml:"rate_limits" jsonschema:"description=Names of rate limits and quotas applied to this route, besides those of its upstream and of the principal's plan."`
	OpenAPI           *OpenAPI           `yaml:"openapi,omitempty" jsonschema:"description=Validate this route's requests against an OpenAPI document (docs/openapi.md)."`
	ResponseFiltering *ResponseFiltering `yaml:"response_filtering,omitempty" jsonschema:"description=Check this route's JSON responses against the document's response schemas (with openapi); remove deny_fields (docs/response-filtering.md)."`
	SafeErrors        *SafeErrors        `yaml:"safe_errors,omitempty" jsonschema:"description=Safe errors for this route; replaces the top-level block."`
	UpstreamHeaders   *UpstreamHeaders   `yaml:"upstream_headers,omitempty" jsonschema:"description=More upstream response headers to remove on this route; on top of security_headers.remove."`
	Version           *Version           `yaml:"version,omitempty" jsonschema:"description=The API version this route serves; its deprecation and sunset (docs/versioning.md)."`
	Masking           *Masking           `yaml:"masking,omitempty" jsonschema:"description=Mask or block personal data and secrets in this route's JSON and text responses (docs/masking.md). Off unless set."`
	WAF               *WAF               `yaml:"waf,omitempty" jsonschema:"description=Web application firewall for this route: Coraza with the OWASP Core Rule Set (docs/waf.md). Off unless set."`
	PayloadLimits     *PayloadLimits     `yaml:"payload_limits,omitempty" jsonschema:"description=Payload limits of this route: the fields set here override the top-level payload_limits."`

	// Line is the line of the route in the configuration file, for messages.
	Line int `yaml:"-"`
}

// Rewrite changes the upstream path of a route.
type Rewrite struct {
	StripPrefix string `yaml:"strip_prefix" jsonschema:"description=Prefix removed from the path before forwarding."`
	AddPrefix   string `yaml:"add_prefix" jsonschema:"description=Prefix added to the path (after strip_prefix) before forwarding."`
}

// State says where shared state lives.
type State struct {
	KeysFile   string `yaml:"keys_file" jsonschema:"description=Embedded store (one bbolt file) for API keys when state.redis is not set. Default moat-keys.db beside the configuration file."`
	QuotasFile string `yaml:"quotas_file" jsonschema:"description=Embedded store (one bbolt file) where quotas kept in memory are saved, so they survive restarts. Default moat-quotas.db beside the configuration file; created only when a quota uses store memory."`
	Redis      *Redis `yaml:"redis,omitempty" jsonschema:"description=Keep rate limits in Redis, shared by every instance. Without it, state is in memory."`
}

// Redis is a connection to Redis: standalone, Sentinel or Cluster.
type Redis struct {
	Addresses  []string `yaml:"addresses" jsonschema:"description=host:port of the server; several for Cluster or Sentinel.,minItems=1"`
	MasterName string   `yaml:"master_name" jsonschema:"description=Sentinel: name of the master set. Empty for standalone or Cluster."`
	Username   string   `yaml:"username" jsonschema:"description=ACL user name."`
	Password   Secret   `yaml:"password" jsonschema:"description=Password; write env:NAME to read it from an environment variable. Never logged."`
	DB         int      `yaml:"db" jsonschema:"description=Database number (standalone and Sentinel).,minimum=0"`
	TLS        bool     `yaml:"tls" jsonschema:"description=Connect with TLS (system roots, or ca_file)."`
	CAFile     string   `yaml:"ca_file" jsonschema:"description=PEM CA bundle for TLS to Redis."`
	PoolSize   int      `yaml:"pool_size" jsonschema:"description=Connections kept to Redis. Every request with a Redis limit holds one for its round trip, so this bounds the concurrency of limited requests. Default 256.,minimum=1"`
	Budget     Duration `yaml:"budget" jsonschema:"description=Longest a request waits for Redis before the limit's on_redis_error policy applies. Default 50ms."`
	ServerTime *bool    `yaml:"server_time" jsonschema:"description=Use the Redis server's clock for limits, so instances with skewed clocks agree. Default true."`
}

// RateLimit is a named GCRA limit.
type RateLimit struct {
	MaxInFlight  int64    `yaml:"max_in_flight" jsonschema:"description=Makes this a concurrency limit: at most this many requests in flight per key on this instance (429 concurrency_limited). rate and per are then not used.,minimum=1"`
	Rate         int64    `yaml:"rate" jsonschema:"description=Requests allowed per period, sustained.,minimum=1"`
	Per          Duration `yaml:"per" jsonschema:"description=The period of rate, such as 1s or 1m."`
	Burst        int64    `yaml:"burst" jsonschema:"description=Requests admitted at once. Default: rate.,minimum=1"`
	MaxDelay     Duration `yaml:"max_delay" jsonschema:"description=Throttle instead of refusing: a request over the rate that can go within this delay is held until its turn. At most 60s. Default 0: refuse at once."`
	Quota        int64    `yaml:"quota" jsonschema:"description=Makes this a quota: at most this many requests per calendar period (429 quota_exceeded). rate and per are then not used.,minimum=1"`
	Period       string   `yaml:"period" jsonschema:"description=A quota's calendar period: day or month, starting at midnight in time_zone.,enum=day,enum=month"`
	TimeZone     string   `yaml:"time_zone" jsonschema:"description=IANA time zone whose midnight starts a quota's period, such as Europe/Berlin. Default UTC."`
	Key          string   `yaml:"key" jsonschema:"description=What is limited: client_ip, principal, api_key, route, upstream, global, or header:NAME. Not with key_expr."`
	KeyExpr      string   `yaml:"key_expr" jsonschema:"description=CEL expression over principal, request and route whose string result is what is limited, such as request.headers['x-tenant']. Not with key."`
	IPv6Prefix   int      `yaml:"ipv6_prefix" jsonschema:"description=With key client_ip: IPv6 clients are counted per prefix of this length (one subscriber usually holds a /64). Default 64.,minimum=1,maximum=128"`
	Store        string   `yaml:"store" jsonschema:"description=memory (this instance) or redis (shared). Default: redis when state.redis is set.,enum=memory,enum=redis"`
	OnRedisError string   `yaml:"on_redis_error" jsonschema:"description=When Redis cannot answer within its budget: fail_closed (503 limiter_unavailable), fail_open (admit), or local (limit in memory with local_share of the limit). Default fail_closed.,enum=fail_closed,enum=fail_open,enum=local"`
	LocalShare   float64  `yaml:"local_share" jsonschema:"description=With on_redis_error: local, the share of the limit one instance applies alone. Default 1.,exclusiveMinimum=0,maximum=1"`
	Headers      *bool    `yaml:"headers" jsonschema:"description=Send RateLimit-Policy and RateLimit headers on allowed responses too (they are always sent with 429). Default true."`
}

// Plan is a named set of rate limits and quotas for the principals on it.
type Plan struct {
	RateLimits []string `yaml:"rate_limits" jsonschema:"description=Names of rate limits and quotas a principal on this plan meets on every route with auth.,minItems=1"`
}

// RouteAuth is a route's authentication: the authenticators tried in order.
type RouteAuth struct {
	Authenticators []string `yaml:"authenticators" jsonschema:"description=Names of authenticators, tried in order; the first that finds its credential decides.,minItems=1"`
	PassCredential bool     `yaml:"pass_credential" jsonschema:"description=Forward the client's credential (Authorization header, API key) to the upstream. Default false: it is removed."`
	AllowQueryKey  bool     `yaml:"allow_query_key" jsonschema:"description=Accept API keys in the query string (the api_key authenticator's query_param) on this route. Keys in URLs leak into logs; avoid."`
	// Authorization: what the authenticated principal may do here.
	Authorization `yaml:",inline"`
}

// Authenticator configures one named authenticator; exactly one kind is set.
type Authenticator struct {
	APIKey        *APIKeyAuth        `yaml:"api_key,omitempty" jsonschema:"description=API keys issued with moat keys create."`
	Basic         *BasicAuth         `yaml:"basic,omitempty" jsonschema:"description=HTTP Basic against an htpasswd file (bcrypt or argon2id)."`
	JWT           *JWTAuth           `yaml:"jwt,omitempty" jsonschema:"description=JWT bearer tokens from one or more issuers."`
	Introspection *IntrospectionAuth `yaml:"introspection,omitempty" jsonschema:"description=Opaque OAuth 2.0 tokens checked with RFC 7662 introspection."`
	ClientCert    *ClientCertAuth    `yaml:"client_cert,omitempty" jsonschema:"description=The verified client certificate of a mutual-TLS listener."`
}

// APIKeyAuth reads moat API keys from the request.
type APIKeyAuth struct {
	Headers    []string `yaml:"headers" jsonschema:"description=Headers carrying the key. Authorization is read with the Bearer scheme. Default [Authorization, X-API-Key]."`
	QueryParam string   `yaml:"query_param" jsonschema:"description=Query parameter carrying the key, honoured only on routes with auth.allow_query_key."`
}

// BasicAuth checks HTTP Basic credentials against an htpasswd file.
type BasicAuth struct {
	HtpasswdFile string `yaml:"htpasswd_file" jsonschema:"description=htpasswd file with bcrypt or argon2id hashes only; reloaded when it changes."`
	Realm        string `yaml:"realm" jsonschema:"description=Realm in the WWW-Authenticate challenge. Default moat."`
}

// JWTAuth verifies JWT bearer tokens.
type JWTAuth struct {
	Issuers      []JWTIssuer `yaml:"issuers" jsonschema:"description=Trusted issuers; a token is checked against the one its iss names.,minItems=1"`
	Leeway       Duration    `yaml:"leeway" jsonschema:"description=Clock skew allowed on exp, nbf and iat. Default 30s."`
	MaxTokenSize Size        `yaml:"max_token_size" jsonschema:"description=Largest token accepted. Default 8KiB."`
	CacheSize    int         `yaml:"cache_size" jsonschema:"description=Verified tokens cached by hash until they expire. Default 10000; -1 disables.,minimum=-1"`
}

// JWTIssuer is one trusted token issuer and how to verify its tokens.
type JWTIssuer struct {
	Issuer          string   `yaml:"issuer" jsonschema:"description=Exact iss value."`
	Audiences       []string `yaml:"audiences" jsonschema:"description=The token's aud must contain one of these.,minItems=1"`
	Algorithms      []string `yaml:"algorithms" jsonschema:"description=Allowed algorithms: RS256..512, PS256..512, ES256..512, EdDSA, HS256..512.,minItems=1"`
	JWKSURL         string   `yaml:"jwks_url" jsonschema:"description=JWKS endpoint, cached and refreshed."`
	Discovery       bool     `yaml:"discovery" jsonschema:"description=Find the JWKS through OpenID Connect discovery at the issuer URL."`
	KeyFiles        []string `yaml:"key_files" jsonschema:"description=PEM public keys or JWK set files."`
	Secret          Secret   `yaml:"secret" jsonschema:"description=HMAC secret for HS algorithms, at least 32 bytes; env:NAME reads it from the environment."`
	RequiredClaims  []string `yaml:"required_claims" jsonschema:"description=Claims that must be present."`
	Type            string   `yaml:"type" jsonschema:"description=Required typ header, such as at+jwt."`
	SubjectClaim    string   `yaml:"subject_claim" jsonschema:"description=Claim naming the subject. Default sub."`
	RolesClaim      string   `yaml:"roles_claim" jsonschema:"description=Claim holding roles (list or space-separated string). Default roles."`
	ScopesClaim     string   `yaml:"scopes_claim" jsonschema:"description=Claim holding scopes. Default scope (space-separated); scp is also read."`
	RefreshInterval Duration `yaml:"refresh_interval" jsonschema:"description=How often the JWKS is refreshed. Default 15m."`
	CertBound       bool     `yaml:"cert_bound" jsonschema:"description=Require RFC 8705 certificate-bound tokens: cnf.x5t#S256 must match the verified client certificate."`
}

// IntrospectionAuth checks opaque tokens with RFC 7662 introspection.
type IntrospectionAuth struct {
	Endpoint       string   `yaml:"endpoint" jsonschema:"description=Introspection endpoint URL."`
	ClientID       string   `yaml:"client_id" jsonschema:"description=Client ID for the endpoint (HTTP Basic)."`
	ClientSecret   Secret   `yaml:"client_secret" jsonschema:"description=Client secret; env:NAME reads it from the environment."`
	CacheTTL       Duration `yaml:"cache_ttl" jsonschema:"description=How long an answer is cached, at most until the token expires. Default 60s."`
	Timeout        Duration `yaml:"timeout" jsonschema:"description=Time allowed for the endpoint to answer. Default 2s."`
	RequiredScopes []string `yaml:"required_scopes" jsonschema:"description=Scopes the token must hold, checked on every request."`
	CAFile         string   `yaml:"ca_file" jsonschema:"description=PEM CA bundle to verify the endpoint."`
}

// ClientCertAuth takes the principal from the verified client certificate.
type ClientCertAuth struct {
	Subject string `yaml:"subject" jsonschema:"description=Where the subject comes from: cn (default), dns, uri, email or spiffe.,enum=cn,enum=dns,enum=uri,enum=email,enum=spiffe"`
	CAFile  string `yaml:"ca_file" jsonschema:"description=Accept only certificates issued by these CAs, an allowlist within the listener's client CAs."`
}

// PrincipalHeaders names the headers that carry the principal upstream.
type PrincipalHeaders struct {
	Disabled      bool              `yaml:"disabled" jsonschema:"description=Send no principal headers (client-sent copies are still removed)."`
	Subject       string            `yaml:"subject" jsonschema:"description=Default X-Moat-Subject."`
	Authenticator string            `yaml:"authenticator" jsonschema:"description=Default X-Moat-Authenticator."`
	Roles         string            `yaml:"roles" jsonschema:"description=Default X-Moat-Roles (comma-separated)."`
	Scopes        string            `yaml:"scopes" jsonschema:"description=Default X-Moat-Scopes (space-separated)."`
	Claims        map[string]string `yaml:"claims" jsonschema:"description=Claim name to header name, for claims to forward."`
}

// BruteForce locks out clients after repeated authentication failures.
type BruteForce struct {
	Disabled    bool     `yaml:"disabled" jsonschema:"description=Turn the lockout off (not recommended)."`
	MaxFailures int64    `yaml:"max_failures" jsonschema:"description=Failures allowed per client IP within window. Default 10.,minimum=1"`
	Window      Duration `yaml:"window" jsonschema:"description=Default 1m."`
	Cooldown    Duration `yaml:"cooldown" jsonschema:"description=How long a locked-out client gets 429. Default 5m."`
}
