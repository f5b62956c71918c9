# --- Release ----------------------------------------------------------------------------------

variable "release_name" {
  type        = string
  description = "Helm release name; resource names derive from it (release-evently-api, …)."
  default     = "evently"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 53 characters (Helm's limit)."
  }
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace Evently is installed into."
  default     = "evently"
}

variable "create_namespace" {
  type        = bool
  description = "Create the namespace (set false when it is managed elsewhere)."
  default     = true
}

variable "chart_path" {
  type        = string
  description = "Path or repository reference of the Evently chart; null means the chart in this repository (helm/evently)."
  default     = null
}

variable "chart_version" {
  type        = string
  description = "Chart version to install when chart_path names a chart in a repository; null for a local chart."
  default     = null
}

variable "atomic" {
  type        = bool
  description = "Roll the release back automatically when an install or upgrade fails (including a failed migration hook)."
  default     = true
}

variable "timeout_seconds" {
  type        = number
  description = "Seconds Helm waits for the migration hook and for the Deployments to become ready."
  default     = 600
}

variable "extra_values" {
  type        = list(string)
  description = "Additional values documents (YAML strings) applied after the module's own, for chart values this module does not expose."
  default     = []
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource (chart commonLabels, namespace and secret labels)."
  default     = {}
}

# --- Image ------------------------------------------------------------------------------------

# Nothing in this repository builds or pushes the default image: push your own and set
# image_repository (and image_tag); see docs/deploy.md, "Your own image".
variable "image_repository" {
  type        = string
  description = "Evently image repository."
  default     = "ghcr.io/evently/evently"
}

variable "image_tag" {
  type        = string
  description = "Evently image tag; null means the chart's appVersion."
  default     = null
}

# --- Connections and secrets ------------------------------------------------------------------

variable "existing_secret_name" {
  type        = string
  description = "Name of an existing Secret with DATABASE_URL, AMQP_URL, ADMIN_API_KEY, ENCRYPTION_KEY and optionally ENCRYPTION_PREVIOUS_KEYS. When null the module creates one from the variables below, generating the keys left null."
  default     = null
}

variable "database_url" {
  type        = string
  description = "Postgres URL (postgres://user:password@host:5432/db); required unless existing_secret_name is set."
  default     = null
  sensitive   = true

  validation {
    condition     = var.database_url == null || can(regex("^postgres(ql)?://", var.database_url))
    error_message = "database_url must start with postgres:// or postgresql://."
  }
}

variable "amqp_url" {
  type        = string
  description = "RabbitMQ URL (amqp:// or amqps://user:password@host:5672/vhost); required unless existing_secret_name is set."
  default     = null
  sensitive   = true

  validation {
    condition     = var.amqp_url == null || can(regex("^amqps?://", var.amqp_url))
    error_message = "amqp_url must start with amqp:// or amqps://."
  }
}

# The keys have no default value: null means generated once (random provider) and kept in the
# Terraform state, which therefore holds them: keep it in an encrypted backend.

variable "admin_api_key" {
  type        = string
  description = "Admin API key: every API route except /health, /ready, /openapi (and /metrics with METRICS_AUTH=admin) needs `Authorization: Bearer <key>`. At least 32 characters; null generates 48 (output admin_api_key)."
  default     = null
  sensitive   = true

  validation {
    condition     = var.admin_api_key == null || can(regex("^\\S{32,}$", var.admin_api_key))
    error_message = "admin_api_key must be at least 32 characters, without spaces."
  }
}

variable "encryption_key" {
  type        = string
  description = "Key that encrypts endpoint secrets at rest: base64 of 32 random bytes (openssl rand -base64 32). Null generates one; changing it later needs the old one in encryption_previous_keys."
  default     = null
  sensitive   = true

  validation {
    condition     = var.encryption_key == null || can(regex("^([A-Za-z0-9+/]{43}=?|[A-Za-z0-9_-]{43}=?)$", var.encryption_key))
    error_message = "encryption_key must be base64 of 32 bytes (44 characters, as openssl rand -base64 32 prints)."
  }
}

variable "encryption_previous_keys" {
  type        = list(string)
  description = "Older encryption keys, used only to decrypt values written before a rotation (ENCRYPTION_PREVIOUS_KEYS); remove one once `reencrypt` reports nothing left under it."
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for key in var.encryption_previous_keys : can(regex("^([A-Za-z0-9+/]{43}=?|[A-Za-z0-9_-]{43}=?)$", key))])
    error_message = "Every encryption_previous_keys entry must be base64 of 32 bytes."
  }
}

# --- Configuration and scaling ----------------------------------------------------------------

variable "config" {
  type        = map(string)
  description = "Non-secret Evently settings by environment variable name (e.g. WORKER_MAX_IN_FLIGHT = \"1024\", or QUEUE_TRANSPORT = \"postgres\" with dispatcher_replicas = 0); see the chart's values.yaml for the list."
  default     = {}
}

variable "api_replicas" {
  type        = number
  description = "API replicas (the minimum when autoscaling is enabled)."
  default     = 2
}

variable "worker_replicas" {
  type        = number
  description = "Worker replicas (the minimum when autoscaling is enabled)."
  default     = 2
}

variable "dispatcher_replicas" {
  type        = number
  description = "Dispatcher replicas; rows are leased with SKIP LOCKED, so two give failover safely."
  default     = 1
}

variable "autoscaling" {
  type = object({
    enabled                = bool
    api_max_replicas       = optional(number, 10)
    worker_max_replicas    = optional(number, 20)
    target_cpu_utilization = optional(number, 70)
  })
  description = "HorizontalPodAutoscalers for api and worker; the replica counts above become the minimums."
  default     = { enabled = false }
}

variable "pdb_enabled" {
  type        = bool
  description = "Create PodDisruptionBudgets (minAvailable 1) for every role."
  default     = false
}

# --- Exposure and monitoring ------------------------------------------------------------------

variable "ingress" {
  type = object({
    host            = string
    class_name      = optional(string, "")
    tls_secret_name = optional(string)
    annotations     = optional(map(string), {})
  })
  description = "Expose the API through an Ingress on this host; null keeps it cluster-internal."
  default     = null
}

variable "service_monitor" {
  type = object({
    enabled  = bool
    interval = optional(string, "30s")
    labels   = optional(map(string), {})
  })
  description = "Create a Prometheus Operator ServiceMonitor (the CRD must exist); labels must match your Prometheus' selector."
  default     = { enabled = false }
}

variable "network_policy_enabled" {
  type        = bool
  description = "Create NetworkPolicies: ingress only to the API port; set networkPolicy.metricsIngressFrom through extra_values to allow scraping."
  default     = false
}
