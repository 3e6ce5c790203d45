{{/*
The alert rules: the single source of deploy/prometheus/kongsplit-alerts.yaml (tests render this
with the default values and compare) and of the PrometheusRule. Runbook: docs/runbook.md.
`{{ $labels.x }}` below is Prometheus templating, escaped from Helm with {{`...`}}.
*/}}
{{- define "kongsplit.alertGroups" -}}
{{- $p := .Values.metrics.prometheusRule }}
{{- $a := $p.alerts }}
{{- $sel := $p.selector }}
{{- $extra := $p.additionalLabels -}}
- name: kongsplit.health
  rules:
    - alert: KongsplitDown
      expr: up{ {{- $sel -}} } == 0
      for: {{ $a.down.for }}
      labels:
        severity: {{ $a.down.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: kongsplit is down
        description: {{ `Prometheus cannot scrape kongsplit at {{ $labels.instance }} (job {{ $labels.job }}). Weights stop following Rollouts and drift is no longer corrected.` | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitdown
    - alert: KongsplitAbsent
      expr: absent(up{ {{- $sel -}} })
      for: {{ $a.down.for }}
      labels:
        severity: {{ $a.down.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: kongsplit is not scraped at all
        description: {{ printf "No scrape target matches %s: kongsplit is not running or Prometheus does not discover it." $sel | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitabsent
    - alert: KongsplitKongAdminUnreachable
      expr: kongsplit_kong_up{ {{- $sel -}} } == 0
      for: {{ $a.kongUnreachable.for }}
      labels:
        severity: {{ $a.kongUnreachable.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: kongsplit cannot reach the Kong Admin API
        description: {{ printf "kongsplit at {{ $labels.instance }} has had no answer from the Kong Admin API for %s. Canary weights, aborts included, are not reaching Kong." $a.kongUnreachable.for | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitkongadminunreachable
    - alert: KongsplitKongAuthFailed
      expr: kongsplit_kong_auth_ok{ {{- $sel -}} } == 0
      for: {{ $a.kongAuth.for }}
      labels:
        severity: {{ $a.kongAuth.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: Kong refuses kongsplit's admin token
        description: {{ printf "The Kong Admin API has answered 401/403 to kongsplit at {{ $labels.instance }} for %s: the admin token is missing, wrong or lacks permissions. No weight, abort included, reaches Kong." $a.kongAuth.for | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitkongauthfailed
    - alert: KongsplitRolloutsUnmanaged
      expr: sum by (job, instance, state) (kongsplit_rollouts{ {{- $sel -}} ,state=~"invalid|refused|failing"}) > 0
      for: {{ $a.rolloutsUnmanaged.for }}
      labels:
        severity: {{ $a.rolloutsUnmanaged.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: annotated Rollouts kongsplit cannot manage
        description: {{ printf "{{ $value | humanize }} Rollout(s) annotated for kongsplit have been %s for %s at {{ $labels.instance }}: their Kong weights do not follow Argo. /state and the Rollouts' Warning Events say why." "{{ $labels.state }}" $a.rolloutsUnmanaged.for | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitrolloutsunmanaged
    - alert: KongsplitNoLeader
      expr: (sum(kongsplit_leader{ {{- $sel -}} }) == 0) and on() (sum(up{ {{- $sel -}} }) > 0)
      for: {{ $a.noLeader.for }}
      labels:
        severity: {{ $a.noLeader.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: no kongsplit replica holds the leader Lease
        description: {{ printf "kongsplit is up but no replica has held the leader Lease for %s, so nothing writes weights to Kong." $a.noLeader.for | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitnoleader
    - alert: KongsplitSyncStale
      expr: (time() - kongsplit_last_sync_timestamp_seconds{ {{- $sel -}} } > {{ $a.syncStale.thresholdSeconds }}) and on(job, instance) (kongsplit_leader{ {{- $sel -}} } == 1)
      for: {{ $a.syncStale.for }}
      labels:
        severity: {{ $a.syncStale.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: kongsplit has not completed a sync with Kong recently
        description: {{ `The writing kongsplit at {{ $labels.instance }} last completed a sync with Kong {{ $value | humanizeDuration }} ago.` | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitsyncstale
    - alert: KongsplitWatchRestarting
      expr: sum by (job, instance, resource) (increase(kongsplit_watch_restarts_total{ {{- $sel -}} }[{{ $a.watchRestarts.window }}])) > {{ $a.watchRestarts.threshold }}
      for: 0s
      labels:
        severity: {{ $a.watchRestarts.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: kongsplit's Kubernetes watch keeps restarting
        description: {{ printf "The {{ $labels.resource }} watch of kongsplit at {{ $labels.instance }} restarted {{ $value | humanize }} times in %s; Rollout changes may reach Kong late." $a.watchRestarts.window | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitwatchrestarting
    - alert: KongsplitReconcileErrors
      expr: sum by (job, instance, reason) (increase(kongsplit_reconcile_errors_total{ {{- $sel -}} }[{{ $a.reconcileErrors.window }}])) > 0
      for: {{ $a.reconcileErrors.for }}
      labels:
        severity: {{ $a.reconcileErrors.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: kongsplit keeps failing to reconcile Rollouts
        description: {{ printf "kongsplit at {{ $labels.instance }} has kept failing to reconcile Rollouts (reason {{ $labels.reason }}) for %s. The Rollouts concerned carry Warning Events." $a.reconcileErrors.for | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitreconcileerrors
- name: kongsplit.weights
  rules:
    - alert: KongsplitWeightMismatch
      expr: (kongsplit_desired_weight{ {{- $sel -}} } != kongsplit_observed_weight{ {{- $sel -}} }) and on(job, instance) (kongsplit_leader{ {{- $sel -}} } == 1)
      for: {{ $a.weightMismatch.for }}
      labels:
        severity: {{ $a.weightMismatch.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: Kong does not serve the weight Argo Rollouts wants
        description: {{ printf "Rollout {{ $labels.rollout_namespace }}/{{ $labels.rollout }}: Kong upstream {{ $labels.upstream }} has served a {{ $labels.role }} weight other than the desired {{ $value }} for %s." $a.weightMismatch.for | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitweightmismatch
    - alert: KongsplitDriftCorrections
      expr: sum by (rollout_namespace, rollout, upstream, kind) (increase(kongsplit_drift_corrections_total{ {{- $sel -}} }[{{ $a.driftCorrections.window }}])) > {{ $a.driftCorrections.threshold }}
      for: 0s
      labels:
        severity: {{ $a.driftCorrections.severity }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        summary: something keeps changing Kong targets behind kongsplit
        description: {{ printf "Rollout {{ $labels.rollout_namespace }}/{{ $labels.rollout }}: kongsplit put Kong upstream {{ $labels.upstream }} back {{ $value | humanize }} times in %s (drift kind {{ $labels.kind }}). Another writer is changing its targets." $a.driftCorrections.window | quote }}
        runbook_url: {{ $p.runbookBaseUrl }}#kongsplitdriftcorrections
{{- end }}
