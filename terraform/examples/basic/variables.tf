variable "kubeconfig_path" {
  type        = string
  description = "Path of the kubeconfig file used by the kubernetes and helm providers."
  default     = "~/.kube/config"
}

variable "kube_context" {
  type        = string
  description = "kubeconfig context to use; null means the current context."
  default     = null
}

variable "namespace" {
  type        = string
  description = "Namespace to install Evently into (created by the module)."
  default     = "evently"
}

variable "image_repository" {
  type        = string
  description = "Evently image repository: the one you pushed (see docs/deploy.md, \"Your own image\")."
  default     = "ghcr.io/evently/evently"
}

variable "image_tag" {
  type        = string
  description = "Evently image tag; null means the chart's appVersion."
  default     = null
}

variable "database_url" {
  type        = string
  description = "Postgres URL, e.g. postgres://evently:password@postgres.db.svc:5432/evently."
  sensitive   = true
}

variable "amqp_url" {
  type        = string
  description = "RabbitMQ URL, e.g. amqp://evently:password@rabbitmq.mq.svc:5672."
  sensitive   = true
}

variable "admin_api_key" {
  type        = string
  description = "Admin API key (at least 32 characters); null lets the module generate one (terraform output -raw admin_api_key)."
  default     = null
  sensitive   = true
}

variable "encryption_key" {
  type        = string
  description = "Encryption key for endpoint secrets at rest (openssl rand -base64 32); null lets the module generate one."
  default     = null
  sensitive   = true
}

variable "ingress_host" {
  type        = string
  description = "Host name to expose the API on through an nginx Ingress; null keeps it cluster-internal."
  default     = null
}
