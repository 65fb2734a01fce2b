//! Institutions: the constituency, listed, created and edited.

use super::{
    csrf_field, error_box, layout, notice_box, respond, CsrfForm, Nav, PageError, PageResult,
    PageUser,
};
use crate::api::institutions::{visible, READERS, WRITERS};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use qalxan_core::{Institution, InstitutionFields, InstitutionId};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

/// The form's fields; lists are one entry per line.
#[derive(Deserialize, Default)]
pub struct InstitutionForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sector: String,
    #[serde(default)]
    contact_name: String,
    #[serde(default)]
    contact_email: String,
    #[serde(default)]
    contact_phone: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    ip_ranges: String,
    #[serde(default)]
    notes: String,
}

fn lines(text: &str) -> Vec<String> {
    text.split(['\n', ',', ' ', '\r', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl InstitutionForm {
    fn fields(self) -> InstitutionFields {
        InstitutionFields {
            name: self.name,
            sector: self.sector,
            contact_name: self.contact_name,
            contact_email: self.contact_email,
            contact_phone: self.contact_phone,
            domains: lines(&self.domains),
            ip_ranges: lines(&self.ip_ranges),
            notes: self.notes,
        }
    }
}

fn parse_id(raw: &str) -> Result<InstitutionId, PageError> {
    raw.parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "institution not found"))
}

pub async fn list(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    user.principal.require(READERS)?;
    let institutions = state
        .store()
        .list_institutions(user.principal.scope())
        .await?;
    let can_write = WRITERS.contains(&user.principal.role);
    let content = html! {
        div.heading {
            h1 { "Institutions" }
            @if can_write { a.button href="/institutions/new" { "New institution" } }
        }
        (notice_box(q.notice.as_deref()))
        @if institutions.is_empty() {
            p.muted { "No institutions yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Name" } th { "Sector" } th { "Contact" } th { "Domains" } th { "IP ranges" } } }
                    tbody {
                        @for i in &institutions {
                            tr {
                                td { a href={"/institutions/" (i.id)} { (i.fields.name) } }
                                td { (i.fields.sector) }
                                td { (i.fields.contact_name) @if !i.fields.contact_email.is_empty() { br; small { (i.fields.contact_email) } } }
                                td { (i.fields.domains.join(", ")) }
                                td { (i.fields.ip_ranges.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Institutions, "Institutions", content),
    ))
}

fn form_page(
    user: &PageUser,
    existing: Option<&Institution>,
    fields: &InstitutionFields,
    error: Option<&str>,
    notice: Option<&str>,
) -> Markup {
    let can_write = WRITERS.contains(&user.principal.role);
    let (title, action) = match existing {
        Some(i) => (i.fields.name.clone(), format!("/institutions/{}", i.id)),
        None => ("New institution".to_owned(), "/institutions".to_owned()),
    };
    let content = html! {
        h1 { (title) }
        (notice_box(notice))
        (error_box(error))
        form.card.wide method="post" action=(action) {
            (csrf_field(user))
            fieldset disabled[!can_write] {
                label { "Name" input name="name" required value=(fields.name); }
                label { "Sector" input name="sector" placeholder="government, health, finance, energy…" value=(fields.sector); }
                div.row {
                    label { "Contact" input name="contact_name" value=(fields.contact_name); }
                    label { "E-mail" input type="email" name="contact_email" value=(fields.contact_email); }
                    label { "Phone" input type="tel" name="contact_phone" value=(fields.contact_phone); }
                }
                div.row {
                    label { "Domains (one per line)" textarea name="domains" rows="4" { (fields.domains.join("\n")) } }
                    label { "IP ranges, CIDR (one per line)" textarea name="ip_ranges" rows="4" { (fields.ip_ranges.join("\n")) } }
                }
                label { "Notes" textarea name="notes" rows="3" { (fields.notes) } }
                @if can_write { button type="submit" { @if existing.is_some() { "Save" } @else { "Create" } } }
            }
        }
        @if let Some(i) = existing {
            @if can_write {
                form.inline method="post" action={"/institutions/" (i.id) "/delete"} {
                    (csrf_field(user))
                    button.danger type="submit" { "Delete institution" }
                    small.muted { " Only possible while it has no users, tokens or events." }
                }
            }
            p.muted { "Created " (i.created_at) ", last changed " (i.updated_at) "." }
        }
    };
    layout(user, Nav::Institutions, &title, content)
}

pub async fn new_form(user: PageUser) -> PageResult {
    user.principal.require(WRITERS)?;
    Ok(respond(
        StatusCode::OK,
        form_page(&user, None, &InstitutionFields::default(), None, None),
    ))
}

pub async fn create(State(state): State<AppState>, form: CsrfForm<InstitutionForm>) -> PageResult {
    let CsrfForm { user, form } = form;
    user.principal.require(WRITERS)?;
    let fields = form.fields();
    match state
        .store()
        .create_institution(&user.principal.actor(), fields.clone())
        .await
    {
        Ok(created) => Ok(
            Redirect::to(&format!("/institutions/{}?notice=created", created.id)).into_response(),
        ),
        Err(e @ (qalxan_store::StoreError::Invalid(_) | qalxan_store::StoreError::Conflict(_))) => {
            Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                form_page(&user, None, &fields, Some(&e.to_string()), None),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn edit_form(
    State(state): State<AppState>,
    user: PageUser,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let institution = visible(&state, &user.principal, parse_id(&id)?).await?;
    Ok(respond(
        StatusCode::OK,
        form_page(
            &user,
            Some(&institution),
            &institution.fields,
            None,
            q.notice.as_deref(),
        ),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<InstitutionForm>,
) -> PageResult {
    let CsrfForm { user, form } = form;
    let institution = visible(&state, &user.principal, parse_id(&id)?).await?;
    user.principal.require(WRITERS)?;
    let fields = form.fields();
    match state
        .store()
        .update_institution(&user.principal.actor(), institution.id, fields.clone())
        .await
    {
        Ok(_) => Ok(
            Redirect::to(&format!("/institutions/{}?notice=saved", institution.id)).into_response(),
        ),
        Err(e @ (qalxan_store::StoreError::Invalid(_) | qalxan_store::StoreError::Conflict(_))) => {
            Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                form_page(
                    &user,
                    Some(&institution),
                    &fields,
                    Some(&e.to_string()),
                    None,
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<Empty>,
) -> PageResult {
    let user = form.user;
    let institution = visible(&state, &user.principal, parse_id(&id)?).await?;
    user.principal.require(WRITERS)?;
    match state
        .store()
        .delete_institution(&user.principal.actor(), institution.id)
        .await
    {
        Ok(()) => Ok(Redirect::to("/institutions?notice=deleted").into_response()),
        Err(qalxan_store::StoreError::Conflict(message)) => Ok(respond(
            StatusCode::CONFLICT,
            form_page(
                &user,
                Some(&institution),
                &institution.fields,
                Some(&message),
                None,
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
