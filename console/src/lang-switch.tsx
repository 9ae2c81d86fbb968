import { setLang, t, useLang, type Lang } from './i18n';
import { useId } from './ui';

export function LangSwitch() {
  const l = useLang();
  const id = useId('lang');
  return (
    <span class="lang-switch">
      <label for={id}>{t('nav.language')}</label>
      <select id={id} value={l} onChange={(e) => setLang((e.currentTarget as HTMLSelectElement).value as Lang)}>
        <option value="en" lang="en">English</option>
        <option value="zh" lang="zh-CN">简体中文</option>
      </select>
    </span>
  );
}
