package config

// mirrordOnlyKeys are mirrord settings doppel does not implement. A
// .mirrord/*.json that uses them must still load, so they are warnings,
// not unknown keys. Keys are normalized key paths (no list indices); the
// value says why doppel ignores the key.
var mirrordOnlyKeys = map[string]string{
	"accept_invalid_certificates": "doppel uses the kubeconfig's TLS settings",
	"operator":                    "doppel has no operator",
	"telemetry":                   "doppel sends no telemetry",
	"sip_binaries":                "macOS only",
	"skip_sip":                    "macOS only",
	"use_proxy":                   "doppel uses the kubeconfig's proxy settings",
	"internal_proxy":              "doppel has no proxy processes",
	"external_proxy":              "doppel has no proxy processes",
	"experimental":                "mirrord experiments",
	"container":                   "mirrord container mode",
	"connect_tcp":                 "not supported",
	"kill":                        "not supported",
	"startup_retry":               "doppel has its own retries",
	"ci":                          "mirrord ci mode",
	"key":                         "mirrord session keys",
	"profile":                     "mirrord operator profiles",
	"api":                         "mirrord session monitor",
	"multi_cluster":               "mirrord operator feature",
	"traceparent":                 "mirrord operator tracing",
	"baggage":                     "mirrord operator tracing",
	"log_destination":             "see doppel.log_level",

	"feature.split_queues":                             "a mirrord operator feature: queues are not split",
	"feature.db_branches":                              "a mirrord operator feature",
	"feature.preview":                                  "a mirrord operator feature",
	"feature.magic":                                    "not supported",
	"feature.capture_error_trace":                      "not supported",
	"feature.env.load_from_process":                    "doppel reads the environment before the process starts",
	"feature.fs.readonly_file_buffer":                  "doppel copies remote files whole",
	"feature.network.ipv6":                             "doppel always handles IPv6",
	"feature.network.incoming.https_delivery":          "a mirrord operator feature",
	"feature.network.incoming.tls_delivery":            "a mirrord operator feature",
	"feature.network.incoming.http_filter.body_filter": "a mirrord operator feature",
	"feature.network.incoming.http_filter.all_of.body": "a mirrord operator feature",
	"feature.network.incoming.http_filter.any_of.body": "a mirrord operator feature",

	"agent.log_level":               "see doppel.log_level",
	"agent.json_log":                "doppel's agent logs in its own format",
	"agent.network_interface":       "doppel's agent finds the pod's interfaces itself",
	"agent.flush_connections":       "doppel's agent hands over new connections only",
	"agent.disabled_capabilities":   "doppel's agent needs its capabilities",
	"agent.check_out_of_pods":       "not needed",
	"agent.dns":                     "doppel resolves with the pod's resolver settings",
	"agent.metrics":                 "not supported",
	"agent.nftables":                "doppel's agent chooses nftables or iptables itself",
	"agent.priority_class":          "not supported yet",
	"agent.security_context":        "not supported yet",
	"agent.exclude_from_mesh":       "doppel disables mesh sidecar injection for its agent",
	"agent.inject_headers":          "not supported",
	"agent.max_body_buffer_size":    "not supported",
	"agent.max_body_buffer_timeout": "not supported",
	"agent.idle_ttl":                "see agent.communication_timeout",
	"agent.test_error":              "mirrord test setting",
}

// ignoredMirrordKey reports whether path is a mirrord setting doppel
// ignores, and why. The decoder does not descend into an ignored key.
func ignoredMirrordKey(path string) (string, bool) {
	why, ok := mirrordOnlyKeys[normalizedKey(path)]
	return why, ok
}
