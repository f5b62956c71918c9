# Installs the Evently Helm chart. Connection secrets and keys are created here as a Kubernetes
# Secret and handed to the chart as secrets.existingSecret, so they never appear in the Helm release
# values.

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name   = var.namespace
    labels = var.labels
  }
}

# Keys left null are generated once and stay in the state, so later applies keep them.
locals {
  admin_api_key  = var.admin_api_key != null ? var.admin_api_key : one(random_password.admin_api_key[*].result)
  encryption_key = var.encryption_key != null ? var.encryption_key : one(random_bytes.encryption_key[*].base64)
}

resource "random_password" "admin_api_key" {
  count = local.create_secret ? 1 : 0

  length  = 48
  special = false
}

resource "random_bytes" "encryption_key" {
  count = local.create_secret ? 1 : 0

  length = 32
}

resource "kubernetes_secret_v1" "connection" {
  count = local.create_secret ? 1 : 0

  metadata {
    name      = local.secret_name
    namespace = var.namespace
    labels    = merge(var.labels, { "app.kubernetes.io/part-of" = "evently" })
  }

  # The provider base64-encodes data. ENCRYPTION_KEY is the base64 text the application decodes.
  data = merge(
    {
      DATABASE_URL   = var.database_url
      AMQP_URL       = var.amqp_url
      ADMIN_API_KEY  = local.admin_api_key
      ENCRYPTION_KEY = local.encryption_key
    },
    length(var.encryption_previous_keys) > 0 ? { ENCRYPTION_PREVIOUS_KEYS = join(",", var.encryption_previous_keys) } : {},
  )

  lifecycle {
    precondition {
      condition     = var.database_url != null && var.amqp_url != null
      error_message = "Set database_url and amqp_url, or existing_secret_name."
    }
  }

  depends_on = [kubernetes_namespace_v1.this]
}

resource "helm_release" "this" {
  name      = var.release_name
  namespace = var.namespace
  chart     = local.chart
  version   = var.chart_version

  values = concat([yamlencode(local.values)], var.extra_values)

  atomic          = var.atomic
  cleanup_on_fail = var.atomic
  wait            = true
  wait_for_jobs   = true
  timeout         = var.timeout_seconds
  max_history     = 10

  depends_on = [kubernetes_namespace_v1.this, kubernetes_secret_v1.connection]
}
