# Chart values computed from the module's variables. Kept apart from the resources so that the
# repository's tests can evaluate them with Terraform alone (no providers) and render the chart.

locals {
  chart         = coalesce(var.chart_path, "${path.module}/../../../helm/evently")
  create_secret = var.existing_secret_name == null
  secret_name   = local.create_secret ? "${var.release_name}-connection" : var.existing_secret_name

  autoscaling = var.autoscaling.enabled

  # The chart's evently.fullname and evently.componentName helpers, for the outputs.
  fullname    = trimsuffix(substr(strcontains(var.release_name, "evently") ? var.release_name : "${var.release_name}-evently", 0, 63), "-")
  api_service = "${trimsuffix(substr(local.fullname, 0, 59), "-")}-api"

  values = {
    commonLabels = var.labels
    image = {
      repository = var.image_repository
      tag        = var.image_tag == null ? "" : var.image_tag
    }
    secrets = {
      existingSecret = local.secret_name
      databaseUrl    = ""
      amqpUrl        = ""
    }
    config = var.config
    api = {
      replicaCount = var.api_replicas
      pdb          = { enabled = var.pdb_enabled }
      autoscaling = {
        enabled                        = local.autoscaling
        minReplicas                    = var.api_replicas
        maxReplicas                    = var.autoscaling.api_max_replicas
        targetCPUUtilizationPercentage = var.autoscaling.target_cpu_utilization
      }
    }
    worker = {
      replicaCount = var.worker_replicas
      pdb          = { enabled = var.pdb_enabled }
      autoscaling = {
        enabled                        = local.autoscaling
        minReplicas                    = var.worker_replicas
        maxReplicas                    = var.autoscaling.worker_max_replicas
        targetCPUUtilizationPercentage = var.autoscaling.target_cpu_utilization
      }
    }
    dispatcher = {
      replicaCount = var.dispatcher_replicas
      pdb          = { enabled = var.pdb_enabled }
    }
    ingress = {
      enabled     = var.ingress != null
      className   = try(var.ingress.class_name, "")
      annotations = try(var.ingress.annotations, {})
      hosts = [for host in compact([try(var.ingress.host, "")]) : {
        host  = host
        paths = [{ path = "/", pathType = "Prefix" }]
      }]
      tls = [for secret in compact([try(var.ingress.tls_secret_name, "")]) : {
        secretName = secret
        hosts      = [var.ingress.host]
      }]
    }
    metrics = {
      serviceMonitor = {
        enabled  = var.service_monitor.enabled
        interval = var.service_monitor.interval
        labels   = var.service_monitor.labels
      }
    }
    networkPolicy = {
      enabled = var.network_policy_enabled
    }
  }
}
