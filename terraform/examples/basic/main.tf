# Evently on an existing cluster, with Postgres and RabbitMQ reached by URL.
#
#   cp terraform.tfvars.example terraform.tfvars   # then edit it
#   terraform init && terraform apply

provider "kubernetes" {
  config_path    = var.kubeconfig_path
  config_context = var.kube_context
}

provider "helm" {
  kubernetes = {
    config_path    = var.kubeconfig_path
    config_context = var.kube_context
  }
}

module "evently" {
  source = "../../modules/evently"

  release_name = "evently"
  namespace    = var.namespace

  database_url   = var.database_url
  amqp_url       = var.amqp_url
  admin_api_key  = var.admin_api_key
  encryption_key = var.encryption_key

  image_repository = var.image_repository
  image_tag        = var.image_tag

  config = {
    LOG_LEVEL            = "info"
    WORKER_MAX_IN_FLIGHT = "1024"
  }

  api_replicas        = 2
  worker_replicas     = 3
  dispatcher_replicas = 2

  ingress = var.ingress_host == null ? null : {
    host       = var.ingress_host
    class_name = "nginx"
  }

  labels = {
    "app.kubernetes.io/part-of" = "evently"
  }
}
