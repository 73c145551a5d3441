-- Who may call what (DESIGN §5). Tables are not an API: roles get functions, and
-- analysts get read access to aveloxis_data.
--
-- apply_grants() is re-run at the end of every upgrade script, so objects added by
-- an upgrade get the same treatment as a fresh install. Functions that write are
-- SECURITY DEFINER with a pinned search_path; nobody but these roles may execute them.
CREATE OR REPLACE FUNCTION aveloxis_ops.apply_grants()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Everything is granted anew below: a routine an upgrade took out of a role's part
    -- (0.7.0: the repo-id forms of record_rename and the commit-author calls) must not
    -- keep that role's grant from an earlier version.
    REVOKE ALL ON ALL ROUTINES IN SCHEMA aveloxis, aveloxis_ops FROM PUBLIC, aveloxis_agent, aveloxis_analyst;

    -- aveloxis_analyst: read the data and the read-only API.
    GRANT USAGE ON SCHEMA aveloxis, aveloxis_data, aveloxis_augur_data TO aveloxis_analyst;
    GRANT SELECT ON ALL TABLES IN SCHEMA aveloxis_data, aveloxis_augur_data TO aveloxis_analyst;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.platform_uuid(smallint, bigint),
        aveloxis.parse_repo_url(text),
        aveloxis.resolve_repo(text),
        aveloxis.registry_counts(),
        aveloxis.resolve_email(text),
        aveloxis.resolve_emails(text[]),
        aveloxis.contributor_quality(),
        aveloxis.duplicate_contributors(integer),
        aveloxis.identity_anomalies(),
        aveloxis.enrichment_progress(),
        aveloxis.search_resolve_queue(),
        aveloxis.contributor_fk_integrity(),
        aveloxis.queue_health(),
        aveloxis.why_not_collected(bigint),
        aveloxis.job_history(bigint, integer),
        aveloxis.token_status(),
        aveloxis.view_refresh_history(integer),
        aveloxis.bot_rule(uuid),
        aveloxis.is_bot(uuid),
        aveloxis.bots(),
        aveloxis.completeness(bigint),
        aveloxis.repo_stats(bigint),
        aveloxis.repo_activity(bigint, date, date, text, boolean),
        aveloxis.group_activity(text, date, date, text, boolean),
        aveloxis.top_contributors(bigint, date, date, integer, boolean),
        aveloxis.new_contributors(bigint, date, date),
        aveloxis.contributor_activity(uuid),
        aveloxis.parse_manifest(text, text),
        aveloxis.parse_manifest(text, bytea),
        aveloxis.manifest_kind(text),
        aveloxis.source_breakers(),
        aveloxis.distribution_stats(),
        aveloxis.distribution_orphans(),
        aveloxis.distribution_repo(text),
        aveloxis.email_chain(text[]),
        aveloxis.person_of(uuid),
        aveloxis.merge_suggestions(integer),
        aveloxis.affiliation_of(uuid, timestamptz),
        aveloxis.commit_affiliation(uuid, text, timestamptz),
        aveloxis.email_affiliation(text, timestamptz),
        aveloxis.enrollments(uuid),
        aveloxis.identity_health(),
        aveloxis.identity_platforms(),
        aveloxis.why_not_enriched(uuid),
        aveloxis.unresolved_commit_authors(integer),
        aveloxis.repo_languages(bigint),
        aveloxis.dependencies(bigint, boolean),
        aveloxis.parse_dependency_file(text, text),
        aveloxis.dependency_file_kind(text),
        aveloxis.dependency_file_patterns(),
        aveloxis.vulnerabilities(bigint, boolean),
        aveloxis.package_cache_stats(),
        aveloxis.sbom(bigint, text, text, text, boolean)
    TO aveloxis_analyst;

    -- aveloxis_agent: the agent API only; no direct access to aveloxis_data.
    GRANT USAGE ON SCHEMA aveloxis TO aveloxis_agent;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.manifest_kind(text),
        aveloxis.report_source(uuid, text, boolean, text),
        aveloxis.distribution_settings(),
        aveloxis.platform_uuid(smallint, bigint),
        aveloxis.forge_hosts(),
        aveloxis.parse_repo_url(text),
        aveloxis.resolve_repo(text),
        aveloxis.registry_counts(),
        aveloxis.add_repo(text, text),
        aveloxis.record_rename(uuid, text),
        aveloxis.drain_begin(bigint),
        aveloxis.drain_step(bigint, bigint, integer),
        aveloxis.drain_finish(bigint, text),
        aveloxis.pending_repos(),
        aveloxis.requeue_rejects(bigint),
        aveloxis.resolve_email(text),
        aveloxis.resolve_emails(text[]),
        aveloxis.link_contributor(uuid, smallint, bigint, text),
        aveloxis.claim(text, text[], integer, interval),
        aveloxis.claim_repo(text, bigint, text, interval),
        aveloxis.heartbeat(uuid[]),
        aveloxis.complete(bigint, uuid, jsonb),
        aveloxis.fail(bigint, uuid, text, text),
        aveloxis.stage(uuid, text, text[], jsonb[]),
        aveloxis.queue_health(),
        aveloxis.why_not_collected(bigint),
        aveloxis.job_history(bigint, integer),
        aveloxis.token_acquire(text[], text, integer, smallint),
        aveloxis.token_settle(text, text, integer, timestamptz, integer, smallint),
        aveloxis.token_release(text, text, integer, smallint),
        aveloxis.token_invalidate(text, text, smallint),
        aveloxis.token_status(),
        aveloxis.commit_authors_to_resolve(uuid, integer),
        aveloxis.record_commit_author(uuid, text, smallint, bigint, text, text, text),
        aveloxis.link_commit_author(uuid, text, uuid, text, text),
        aveloxis.record_commit_author_miss(text, text, text, text),
        aveloxis.record_commit_author_misses(text[], text[], text[], text[]),
        aveloxis.email_chain(text[]),
        aveloxis.claim_identity_batch(text, text, smallint, integer, interval),
        aveloxis.stage_identity(uuid, uuid[], text[], integer[], text[]),
        aveloxis.complete_identity_batch(uuid, uuid[]),
        aveloxis.identity_health(),
        aveloxis.identity_platforms(),
        aveloxis.analysis_state(uuid),
        aveloxis.scorecard_settings(),
        aveloxis.known_dependency_blobs(uuid),
        aveloxis.dependency_file_patterns(),
        aveloxis.packages_due(uuid),
        aveloxis.osv_settings(),
        aveloxis.osv_due(uuid),
        aveloxis.osv_vulns_needed(uuid, text[], timestamptz[]),
        aveloxis.sbom(bigint, text, text, text, boolean)
    TO aveloxis_agent;
    GRANT EXECUTE ON PROCEDURE
        aveloxis.drain(bigint, integer),
        aveloxis.drain_all(integer),
        aveloxis.retry_rejects(bigint, integer)
    TO aveloxis_agent;
    -- Agents stage through aveloxis.stage() under a lease; they hold no privilege on any
    -- table (a grant of 0.6.0 and earlier, taken back here).
    REVOKE ALL ON ALL TABLES IN SCHEMA aveloxis_ops FROM aveloxis_agent;
    REVOKE USAGE ON SCHEMA aveloxis_ops FROM aveloxis_agent;

    -- aveloxis_admin: the whole API, and read access everywhere.
    GRANT USAGE ON SCHEMA aveloxis, aveloxis_ops, aveloxis_data, aveloxis_augur_data TO aveloxis_admin;
    GRANT SELECT ON ALL TABLES IN SCHEMA aveloxis_ops, aveloxis_data, aveloxis_augur_data TO aveloxis_admin;
    -- refresh_views() runs with its caller's rights and calls these steps.
    GRANT EXECUTE ON FUNCTION aveloxis_ops.refresh_begin(boolean), aveloxis_ops.refresh_one(bigint, integer),
        aveloxis_ops.refresh_end(bigint), aveloxis_ops.refresh_order()
    TO aveloxis_admin;
    GRANT EXECUTE ON ALL ROUTINES IN SCHEMA aveloxis TO aveloxis_admin;
END
$$;

SELECT aveloxis_ops.apply_grants();
