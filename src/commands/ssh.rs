//! `ldm ssh NAME [-u USER] [-- CMD ARGS...]`: a login shell as the
//! container's user (so its groups apply), or one command with its exit code.

use crate::cli::{Ssh, DEFAULT_WAIT};
use crate::commands::{gate, op, Ctx};
use crate::model::validate;
use crate::trust::Need;
use crate::Error;

/// Runs `$0 "$@"` in the login shell: the script is constant, the command
/// and its arguments reach the container as separate argv elements.
const RUN_ARGV: &str = r#"exec "$0" "$@""#;

/// Opens the shell (replacing this process) or runs the command.
pub fn run(ctx: &Ctx, args: &Ssh) -> Result<(), Error> {
    let (_, project, _) = gate::load(ctx, &Need::lxd())?;
    op::container(&project, &args.name)?;
    let lxd = ctx.lxd(&project, DEFAULT_WAIT);
    let lxd_name = project.lxd_name(&args.name);
    let user = match &args.user {
        Some(u) => u.clone(),
        None => project.effective_user(&args.name).0,
    };
    if user != "root" {
        validate::user_name(&user)?;
    }
    op::running(&*lxd, &args.name, &lxd_name)?;
    let mut argv: Vec<&str> = vec!["su", "-l", &user];
    if args.command.is_empty() {
        return Err(Error::lxd(format!("opening a shell in {lxd_name}"))(
            lxd.exec_replace(&lxd_name, &argv),
        ));
    }
    argv.extend(["-c", RUN_ARGV, "--"]);
    argv.extend(args.command.iter().map(String::as_str));
    match lxd
        .exec_attached(&lxd_name, &argv)
        .map_err(Error::lxd(format!("running a command in {lxd_name}")))?
    {
        0 => Ok(()),
        code => Err(Error::Exit(code)),
    }
}
