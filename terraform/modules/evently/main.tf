# Installs the Evently Helm chart. Connection secrets are created here as a Kubernetes Secret and
# handed to the chart as secrets.existingSecret, so they never appear in the Helm release values.

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name   = var.namespace
    labels = var.labels
  }
}

resource "kubernetes_secret_v1" "connection" {
  count = local.create_secret ? 1 : 0

  metadata {
    name      = local.secret_name
    namespace = var.namespace
    labels    = merge(var.labels, { "app.kubernetes.io/part-of" = "evently" })
  }

  # The provider base64-encodes data; API_KEY is present only when set.
  data = merge(
    {
      DATABASE_URL = var.database_url
      AMQP_URL     = var.amqp_url
    },
    { for key, value in { API_KEY = var.api_key } : key => value if value != null },
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
