"""Signing in and out: the product's login page, the admin's login, and a client's own accounts.

- `/`: the right home: staff to `/staff/`, a signed-in client to the portal (`/my/`), anyone else to
  `/login/` (the admin's "View site" link goes here).
- `/login/` (settings.LOGIN_URL): anyone with a user; staff land on `/staff/`, clients on `/my/`.
- `/logout/` (POST): signs out, back to `/login/`.
- `/password-reset/...`: Django's password reset by email, with the product's own templates
  (`templates/registration/password_reset_*`). With no mail server set (SMTP backend, no
  EMAIL_HOST) and DEBUG on, the email is printed on the web process's console instead.
- `/admin/login/`: Django's admin login for staff; a client's right password there is sent to
  `/login/` with a message (not logged in), and a signed-in client opening the admin lands on `/my/`.

Every form refuses a locked-out username or address before checking the password
(`accounts.security`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.views import LoginView, LogoutView, PasswordResetView
from django.core.mail import EmailMultiAlternatives, get_connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect
from django.template import loader
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache

from accounts.security import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm

logger = logging.getLogger(__name__)

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"
ADMIN_IS_FOR_STAFF = "The admin is for staff only. Clients sign in here and see their own accounts."
SIGNED_OUT = "You are signed out."

# Anything that still reaches Django's own admin login view is throttled too.
admin.site.login_form = ThrottledAdminAuthenticationForm


class SignInView(LoginView):
    """The product's login page (LOGIN_URL)."""

    form_class = ThrottledAuthenticationForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        user = self.request.user
        if user.is_authenticated and user.is_staff:
            return reverse("dashboard:overview")
        return reverse("portal:home")


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """`/`: staff to the dashboards, a signed-in client to the portal, anyone else to the login page."""
    user = request.user
    if not user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    if user.is_staff:
        return redirect("dashboard:overview")
    return redirect("portal:home")


@method_decorator(never_cache, name="dispatch")
class SignOutView(LogoutView):
    """POST /logout/: end the session; back to the login page."""

    next_page = "login"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.info(request, SIGNED_OUT)
        return response


class AdminSignInView(LoginView):
    """/admin/login/: Django's admin login page, for staff; clients are pointed to /login/."""

    form_class = ThrottledAuthenticationForm  # the staff check is ours (form_valid), not a form error
    template_name = "admin/login.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if user.is_authenticated and user.is_active:
            if user.is_staff:
                return HttpResponseRedirect(reverse("admin:index"))
            messages.info(request, ADMIN_IS_FOR_STAFF)
            return redirect("portal:home")
        request.current_app = admin.site.name
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        if not form.get_user().is_staff:
            messages.info(self.request, ADMIN_IS_FOR_STAFF)
            return redirect(settings.LOGIN_URL)
        return super().form_valid(form)

    def get_default_redirect_url(self) -> str:
        return reverse("admin:index")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            admin.site.each_context(self.request),
            title="Log in",
            subtitle=None,
            app_path=self.request.get_full_path(),
            username=self.request.user.get_username(),
        )
        if not context.get(REDIRECT_FIELD_NAME):
            context[REDIRECT_FIELD_NAME] = reverse("admin:index")
        return context


admin_login = never_cache(AdminSignInView.as_view())


def mail_backend_for_reset() -> str | None:
    """The backend password-reset emails use: the console in development when no mail server is
    set (SMTP without EMAIL_HOST would only fail), else None (the configured one)."""
    if settings.DEBUG and settings.EMAIL_BACKEND == SMTP_BACKEND and not settings.EMAIL_HOST:
        return CONSOLE_BACKEND
    return None


class ResetForm(PasswordResetForm):
    """Django's form; in development without a mail server the email goes to the console."""

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        backend = mail_backend_for_reset()
        if backend is None:
            super().send_mail(
                subject_template_name,
                email_template_name,
                context,
                from_email,
                to_email,
                html_email_template_name,
            )
            return
        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        body = loader.render_to_string(email_template_name, context)
        message = EmailMultiAlternatives(
            subject, body, from_email, [to_email], connection=get_connection(backend)
        )
        message.send()
        logger.info("no mail server set (EMAIL_HOST): the password reset email is printed above")


class ResetView(PasswordResetView):
    """/password-reset/: ask for a reset link by email (the same answer whether the address is known)."""

    form_class = ResetForm
