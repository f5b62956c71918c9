output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.this.name
}

output "namespace" {
  description = "Namespace Evently runs in."
  value       = helm_release.this.namespace
}

output "release_status" {
  description = "Status of the Helm release (deployed when the migration and rollout succeeded)."
  value       = helm_release.this.status
}

output "api_service_name" {
  description = "Name of the API Service (port 80), the same name the chart's helpers compute."
  value       = local.api_service
}

output "api_url" {
  description = "In-cluster URL of the API."
  value       = "http://${local.api_service}.${var.namespace}.svc"
}

output "connection_secret_name" {
  description = "Secret holding DATABASE_URL, AMQP_URL and API_KEY."
  value       = local.secret_name
}
