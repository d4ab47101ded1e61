/** The bar on every page: the brand (home), and links to go live and to the admin dashboard. */
import { Link, useLocation } from 'wouter';

export function Header() {
  const [location] = useLocation();
  const here = (prefix: string): 'page' | undefined => (location === prefix || location.startsWith(`${prefix}/`) ? 'page' : undefined);
  return (
    <header className="topbar">
      <nav aria-label="Main">
        <Link className="brand" href="/" aria-current={location === '/' ? 'page' : undefined}>
          Glasscast
        </Link>
        <Link href="/broadcast" aria-current={here('/broadcast')}>
          Go live
        </Link>
        <Link href="/admin" aria-current={here('/admin')}>
          Admin
        </Link>
      </nav>
    </header>
  );
}
